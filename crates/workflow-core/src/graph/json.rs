//! Reading workflow definitions from JSON, strictly: a key the format does not have is an
//! error naming it, where it is, and the key probably meant (`"retries"` in a node: did you
//! mean `"retry"`?), so a misspelled setting is never silently dropped. The format's JSON
//! Schema is generated from the same types, for editors and frontends that build definitions.

use serde_json::Value;

use super::WorkflowDefinition;

/// Why a JSON document is not a workflow definition: one line naming the place and the fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DefinitionError {
    message: String,
}

impl WorkflowDefinition {
    /// Parses a definition from JSON text. Unknown keys are errors (see the module docs);
    /// every other fault names its place too: `nodes[1].retry.max_attempts: invalid type: …`.
    pub fn from_json(text: &str) -> Result<Self, DefinitionError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed: Result<Self, _> = serde_path_to_error::deserialize(&mut deserializer);
        let definition = parsed.map_err(|err| {
            let inner = err.inner();
            let at = (inner.line() > 0)
                .then(|| format!(" (line {}, column {})", inner.line(), inner.column()));
            explain(&err.path().to_string(), &message_of(inner), at)
        })?;
        deserializer.end().map_err(|err| DefinitionError {
            message: format!("not a single JSON document: {err}"),
        })?;
        Ok(definition)
    }

    /// Parses a definition from a JSON value, as [`from_json`](Self::from_json) does.
    pub fn from_value(value: Value) -> Result<Self, DefinitionError> {
        serde_path_to_error::deserialize(value)
            .map_err(|err| explain(&err.path().to_string(), &err.inner().to_string(), None))
    }

    /// The JSON Schema (draft 2020-12) of the definition format, generated from these types:
    /// `workflow-worker workflow schema` prints it, and `docs/workflow-definition.schema.json`
    /// is a copy. Node configs are free-form here; each node type checks its own when the
    /// workflow is saved.
    pub fn json_schema() -> Value {
        serde_json::to_value(schemars::schema_for!(WorkflowDefinition)).unwrap_or(Value::Null)
    }
}

/// serde_json's message without its ` at line L column C` suffix.
fn message_of(err: &serde_json::Error) -> String {
    let message = err.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

/// Turns serde's message at `path` into ours.
fn explain(path: &str, message: &str, at: Option<String>) -> DefinitionError {
    let place = match path {
        "" | "." => "the definition".to_owned(),
        path => path.to_owned(),
    };
    let at = at.unwrap_or_default();
    let message = match unknown_field(message) {
        Some((key, expected)) => {
            // serde's path ends at the unknown key itself: name its object.
            let object = match place.rsplit_once('.') {
                Some((object, last)) if last == key => object.to_owned(),
                _ if place == key => "the definition".to_owned(),
                _ => place.clone(),
            };
            let hint = closest(&key, &expected)
                .map(|meant| format!(" (did you mean \"{meant}\"?)"))
                .unwrap_or_default();
            format!(
                "{object}: unknown key \"{key}\"{hint}{at}; allowed: {}",
                expected.join(", ")
            )
        }
        None => format!("{place}: {message}{at}"),
    };
    DefinitionError { message }
}

/// The key and the expected keys of serde's "unknown field `k`, expected one of `a`, `b`"
/// (or "expected `a`").
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((key.to_owned(), expected))
}

/// The candidate nearest to `key` in edits, if it is near enough to be a slip: a few edits
/// away, or sharing its first four letters (`retries` for `retry`).
fn closest<'a>(key: &str, candidates: &'a [String]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(2);
    let shared_prefix = |candidate: &str| {
        key.to_lowercase()
            .chars()
            .zip(candidate.to_lowercase().chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    candidates
        .iter()
        .map(|candidate| (edits(key, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= limit || shared_prefix(candidate) >= 4)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.as_str())
}

/// Levenshtein distance, ignoring case.
fn edits(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        WorkflowDefinition::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn misspelled_keys_are_named_with_the_key_probably_meant() {
        let err = error(
            r#"{"name": "w", "nodes": [{"id": "start", "type": "trigger"},
                {"id": "a", "type": "code", "retries": {"max_attempts": 3}}]}"#,
        );
        assert!(
            err.starts_with("nodes[1]: unknown key \"retries\" (did you mean \"retry\"?)"),
            "{err}"
        );
        assert!(
            err.ends_with("; allowed: id, type, config, retry, timeout, rate_limit"),
            "{err}"
        );
        let err =
            error(r#"{"name": "w", "nodes": [{"id": "start", "type": "trigger", "timout": 5}]}"#);
        assert!(
            err.starts_with("nodes[0]: unknown key \"timout\" (did you mean \"timeout\"?)"),
            "{err}"
        );
        let err =
            error(r#"{"name": "w", "nodes": [{"id": "start", "type": "trigger"}], "edge": []}"#);
        assert!(
            err.starts_with("the definition: unknown key \"edge\" (did you mean \"edges\"?)"),
            "{err}"
        );
        let err = error(
            r#"{"name": "w", "nodes": [{"id": "s", "type": "trigger"}],
                "edges": [{"from": "s", "too": "s"}]}"#,
        );
        assert!(
            err.starts_with("edges[0]: unknown key \"too\" (did you mean \"to\"?)"),
            "{err}"
        );
        let err = error(
            r#"{"name": "w", "retry": {"max_attempts": 2, "backoff": 1},
                "nodes": [{"id": "s", "type": "trigger"}]}"#,
        );
        assert!(err.starts_with("retry: unknown key \"backoff\""), "{err}");
        // Nothing close: no guess.
        let err = error(r#"{"name": "w", "nodes": [], "colour": "red"}"#);
        assert!(
            err.starts_with("the definition: unknown key \"colour\" (line 1"),
            "{err}"
        );
    }

    #[test]
    fn other_faults_name_their_place() {
        let err = error(
            r#"{"name": "w", "nodes": [{"id": "s", "type": "trigger", "retry": {"max_attempts": "three"}}]}"#,
        );
        assert!(
            err.starts_with("nodes[0].retry.max_attempts: invalid type: string \"three\""),
            "{err}"
        );
        let err = error(r#"{"name": "w"}"#);
        assert!(err.contains("missing field `nodes`"), "{err}");
        assert!(
            error(r#"{"name": "w", "nodes": []} {}"#).starts_with("not a single JSON document")
        );
    }

    #[test]
    fn values_are_read_as_strictly_as_text() {
        let err = WorkflowDefinition::from_value(serde_json::json!({
            "name": "w", "nodes": [{"id": "s", "type": "trigger", "retrys": null}]
        }))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("unknown key \"retrys\" (did you mean \"retry\"?)"),
            "{err}"
        );
    }

    #[test]
    fn the_schema_refuses_unknown_keys_and_knows_every_field() {
        let schema = WorkflowDefinition::json_schema();
        assert_eq!(schema["additionalProperties"], false);
        let properties = schema["properties"].as_object().unwrap();
        for key in ["name", "description", "retry", "timeout", "nodes", "edges"] {
            assert!(properties.contains_key(key), "{key} missing from {schema}");
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(required, ["name", "nodes"]);
    }

    #[test]
    fn the_published_schema_is_the_generated_one() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/workflow-definition.schema.json"
        );
        let generated = format!(
            "{}\n",
            serde_json::to_string_pretty(&WorkflowDefinition::json_schema()).unwrap()
        );
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let published = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            published == generated,
            "{path} is out of date: run `UPDATE_SCHEMA=1 cargo test -p workflow-worker-core \
             the_published_schema` (or `workflow-worker workflow schema > {path}`)"
        );
    }

    #[test]
    fn edit_distance() {
        assert_eq!(edits("retries", "retry"), 3);
        assert_eq!(edits("timout", "timeout"), 1);
        assert_eq!(edits("edge", "edges"), 1);
        assert_eq!(closest("colour", &["name".into(), "nodes".into()]), None);
    }
}
