//! Values from the input in node configs: `{"$template": "…"}` anywhere in a node's `config`
//! is replaced, each time the node runs, by what the template makes of the node's input, the
//! execution, and the outputs of nodes upstream of it. One syntax for every node type,
//! built-in or custom: the template language is Jinja's, as [MiniJinja] implements it.
//!
//! ```json
//! {"id": "notify", "type": "http", "config": {
//!     "url": {"$template": "https://api.example.com/customers/{{ input.customer.id }}"},
//!     "body": {"order": {"$template": "{{ nodes.fetch.output.body.order }}"}}
//! }}
//! ```
//!
//! - A template sees `input` (the node's input), `execution` (`id`, `workflow`, `input`: the
//!   input the execution started with) and `nodes` (`nodes.<id>.output` for each node
//!   upstream of this one that completed).
//! - A template that is one expression alone, `{{ … }}`, gives the expression's value with its
//!   JSON type (a number, a list, an object, `null`); any other template renders to a string.
//! - A name that is not there is an error (no silent empty string): the node fails for good,
//!   saying which.
//!
//! Checked when the workflow is saved ([`scan`]): the syntax, the names a template uses, and
//! that every `nodes.<id>` it names is a node upstream of it (a node elsewhere may not have
//! run when this one does). A config with templates is checked by its node type once the
//! templates are rendered, when the node runs, since only then are its values known.
//!
//! [MiniJinja]: https://docs.rs/minijinja

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::{Map, Value};

/// The key of a template object: `{"$template": "…"}`.
pub const TEMPLATE_KEY: &str = "$template";

/// What templates see: the roots of every name they use.
pub const SCOPE: [&str; 3] = ["input", "execution", "nodes"];

/// How much work one template may do, in MiniJinja's fuel: a loop over a huge range stops
/// with an error instead of holding the worker.
const FUEL: u64 = 1_000_000;

/// A template that cannot be used, and where it is in the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TemplateProblem {
    /// Where in the node, e.g. `config.headers.Authorization`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// The templates of one node's config, as [`scan`] found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigTemplates {
    /// The node ids its templates name as `nodes.<id>`, each with where it is named.
    pub nodes: Vec<(String, String)>,
}

/// Whether `value` is a template object, `{"$template": …}`.
pub fn is_template(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|map| map.contains_key(TEMPLATE_KEY))
}

/// Finds and checks every template in `config`: `None` when it has none, else the node ids
/// they name (for the caller to check against the graph); and every problem found, by path.
pub fn scan(config: &Value) -> (Option<ConfigTemplates>, Vec<TemplateProblem>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    walk(config, &mut "config".to_owned(), &mut found, &mut problems);
    if found.is_empty() && problems.is_empty() {
        return (None, problems);
    }
    let env = environment();
    let mut templates = ConfigTemplates::default();
    for (path, source) in found {
        let names = match names_in(&env, source) {
            Ok(names) => names,
            Err(err) => {
                problems.push(TemplateProblem {
                    path,
                    reason: describe(&err),
                });
                continue;
            }
        };
        for name in names {
            let mut parts = name.split('.');
            let root = parts.next().unwrap_or_default();
            if root == "nodes" {
                if let Some(id) = parts.next() {
                    templates.nodes.push((path.clone(), id.to_owned()));
                }
            } else if !SCOPE.contains(&root) && env.globals().all(|(global, _)| global != root) {
                problems.push(TemplateProblem {
                    path: path.clone(),
                    reason: format!(
                        "unknown name \"{root}\": templates see input, execution and nodes"
                    ),
                });
            }
        }
    }
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    (Some(templates), problems)
}

/// Replaces every template in `config` by its value in `scope`, a JSON object with `input`,
/// `execution` and `nodes`, leaving the top-level keys in `deferred` as they are. The first
/// template that fails is the error.
pub fn render(config: &Value, scope: &Value, deferred: &[&str]) -> Result<Value, TemplateProblem> {
    let env = environment();
    let scope = minijinja::Value::from(minijinja::value::Serde(scope));
    match config {
        Value::Object(map) if !deferred.is_empty() && !map.contains_key(TEMPLATE_KEY) => {
            let mut rendered = Map::with_capacity(map.len());
            for (key, child) in map {
                let value = if deferred.contains(&key.as_str()) {
                    child.clone()
                } else {
                    render_value(&env, child, &scope, &mut format!("config.{key}"))?
                };
                rendered.insert(key.clone(), value);
            }
            Ok(Value::Object(rendered))
        }
        _ => render_value(&env, config, &scope, &mut "config".to_owned()),
    }
}

/// The environment every template is checked and rendered in: undefined names are errors,
/// and work is bounded.
fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

/// The expression of a template that is one `{{ … }}` alone, whose value keeps its type.
fn lone_expression(source: &str) -> Option<&str> {
    let inner = source
        .trim()
        .strip_prefix("{{")?
        .strip_suffix("}}")?
        .trim_start_matches('-')
        .trim_end_matches('-');
    let nested = ["{{", "}}", "{%", "%}", "{#"]
        .iter()
        .any(|marker| inner.contains(marker));
    (!nested).then_some(inner)
}

/// The names `source` looks up, with their attribute paths (`nodes.fetch.output`).
fn names_in(env: &Environment<'_>, source: &str) -> Result<BTreeSet<String>, minijinja::Error> {
    let names = match lone_expression(source) {
        Some(expression) => env
            .compile_expression(expression)?
            .undeclared_variables(true),
        None => env.template_from_str(source)?.undeclared_variables(true),
    };
    Ok(names.into_iter().collect())
}

/// Every `{"$template": …}` in `value` with its path, and the malformed ones as problems.
fn walk<'v>(
    value: &'v Value,
    path: &mut String,
    found: &mut Vec<(String, &'v str)>,
    problems: &mut Vec<TemplateProblem>,
) {
    match value {
        Value::Object(map) if map.contains_key(TEMPLATE_KEY) => match template_of(map) {
            Ok(source) => found.push((path.clone(), source)),
            Err(reason) => problems.push(TemplateProblem {
                path: path.clone(),
                reason,
            }),
        },
        Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                walk(child, path, found, problems);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(child, path, found, problems);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// The source of a template object, or why it is not one.
fn template_of(map: &Map<String, Value>) -> Result<&str, String> {
    if map.len() != 1 {
        return Err(format!(
            "a {{\"{TEMPLATE_KEY}\": …}} object has no other keys"
        ));
    }
    match &map[TEMPLATE_KEY] {
        Value::String(source) => Ok(source),
        other => Err(format!("\"{TEMPLATE_KEY}\" must be a string, not {other}")),
    }
}

fn render_value(
    env: &Environment<'_>,
    value: &Value,
    scope: &minijinja::Value,
    path: &mut String,
) -> Result<Value, TemplateProblem> {
    let problem = |path: &str, reason: String| TemplateProblem {
        path: path.to_owned(),
        reason,
    };
    match value {
        Value::Object(map) if map.contains_key(TEMPLATE_KEY) => {
            let source = template_of(map).map_err(|reason| problem(path, reason))?;
            render_one(env, source, scope).map_err(|reason| problem(path, reason))
        }
        Value::Object(map) => {
            let mut rendered = Map::with_capacity(map.len());
            for (key, child) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                rendered.insert(key.clone(), render_value(env, child, scope, path)?);
                path.truncate(len);
            }
            Ok(Value::Object(rendered))
        }
        Value::Array(items) => {
            let mut rendered = Vec::with_capacity(items.len());
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                rendered.push(render_value(env, child, scope, path)?);
                path.truncate(len);
            }
            Ok(Value::Array(rendered))
        }
        other => Ok(other.clone()),
    }
}

/// One template's value: typed for a lone expression, else a string.
fn render_one(
    env: &Environment<'_>,
    source: &str,
    scope: &minijinja::Value,
) -> Result<Value, String> {
    let Some(expression) = lone_expression(source) else {
        return env
            .render_str(source, scope)
            .map(Value::String)
            .map_err(|err| describe(&err));
    };
    let value = env
        .compile_expression(expression)
        .and_then(|compiled| compiled.eval(scope))
        .map_err(|err| describe(&err))?;
    if value.is_undefined() {
        return Err(format!("\"{}\" is undefined", expression.trim()));
    }
    serde_json::to_value(&value).map_err(|err| format!("its value is not JSON: {err}"))
}

/// A MiniJinja error in one line, without the name of the string it was read from.
fn describe(err: &minijinja::Error) -> String {
    let mut text = err.kind().to_string();
    if let Some(detail) = err.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Value {
        json!({
            "input": {"customer": {"id": 42, "name": "Ada <ada@example.com>"}, "items": [1, 2, 3]},
            "execution": {"id": "e-1", "workflow": "orders", "input": {"region": "eu"}},
            "nodes": {"fetch": {"output": {"body": {"order": {"total": 9.5}}}}}
        })
    }

    #[test]
    fn a_lone_expression_keeps_its_type_and_other_templates_render_strings() {
        let config = json!({
            "url": {"$template": "https://api.example.com/customers/{{ input.customer.id }}"},
            "id": {"$template": "{{ input.customer.id }}"},
            "items": {"$template": "{{ input.items }}"},
            "order": {"$template": " {{ nodes.fetch.output.body.order }} "},
            "region": {"$template": "{{ execution.input.region | upper }}"},
            "count": {"$template": "{{ input['items'] | length }}"},
            "nested": [{"$template": "{{ execution.workflow }}-{{ execution.id }}"}, "plain"],
            "untouched": {"template": "{{ left alone }}"}
        });
        let rendered = render(&config, &scope(), &[]).unwrap();
        assert_eq!(
            rendered,
            json!({
                "url": "https://api.example.com/customers/42",
                "id": 42,
                "items": [1, 2, 3],
                "order": {"total": 9.5},
                "region": "EU",
                "count": 3,
                "nested": ["orders-e-1", "plain"],
                "untouched": {"template": "{{ left alone }}"}
            })
        );
        // Rendering escapes nothing: the values are data, not HTML.
        let name = render(
            &json!({"$template": "to {{ input.customer.name }}"}),
            &scope(),
            &[],
        );
        assert_eq!(name.unwrap(), json!("to Ada <ada@example.com>"));
    }

    #[test]
    fn deferred_keys_are_left_for_later() {
        let config = json!({
            "items": {"$template": "{{ input.items }}"},
            "node": {"config": {"id": {"$template": "{{ input.id }}"}}}
        });
        let rendered = render(&config, &scope(), &["node"]).unwrap();
        assert_eq!(rendered["items"], json!([1, 2, 3]));
        assert_eq!(rendered["node"], config["node"]);
    }

    #[test]
    fn a_missing_name_is_an_error_naming_where() {
        for (source, expected) in [
            ("{{ input.nope }}", "\"input.nope\" is undefined"),
            ("id {{ input.nope }}", "undefined value"),
            ("{{ input.nope.deeper }}", "undefined value"),
        ] {
            let config = json!({"headers": {"X-Id": {"$template": source}}});
            let err = render(&config, &scope(), &[]).unwrap_err();
            assert_eq!(err.path, "config.headers.X-Id", "{source}");
            assert!(err.reason.contains(expected), "{source}: {err}");
        }
    }

    #[test]
    fn work_is_bounded() {
        let config = json!({"$template": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"});
        let err = render(&config, &scope(), &[]).unwrap_err();
        assert!(err.reason.contains("fuel"), "{err}");
    }

    #[test]
    fn scan_finds_the_nodes_named_and_every_problem() {
        assert_eq!(
            scan(&json!({"url": "plain", "n": [1, {"a": 2}]})),
            (None, Vec::new())
        );
        let (found, problems) = scan(&json!({
            "url": {"$template": "{{ nodes.fetch.output.url }}/{{ input.id }}"},
            "items": [{"$template": "{{ nodes.split.output }}"}],
            "n": {"$template": "{% for x in range(3) %}{{ x }}{% endfor %}"}
        }));
        assert_eq!(problems, Vec::new());
        let mut nodes = found.unwrap().nodes;
        nodes.sort();
        assert_eq!(
            nodes,
            vec![
                ("config.items[0]".to_owned(), "split".to_owned()),
                ("config.url".to_owned(), "fetch".to_owned()),
            ]
        );
        let (_, problems) = scan(&json!({
            "a": {"$template": "{{ secret.token }}"},
            "b": {"$template": "{{ input.x "},
            "c": {"$template": 5},
            "d": {"$template": "{{ input }}", "other": 1}
        }));
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert_eq!(
            shown[0],
            "config.a: unknown name \"secret\": templates see input, execution and nodes"
        );
        assert!(shown[1].starts_with("config.b: syntax error"), "{shown:?}");
        assert_eq!(shown[2], "config.c: \"$template\" must be a string, not 5");
        assert_eq!(
            shown[3],
            "config.d: a {\"$template\": …} object has no other keys"
        );
    }
}
