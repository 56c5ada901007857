//! The OpenAPI 3.1 document of the API, built from the route table and the types' JSON
//! Schemas (schemars, draft 2020-12, which OpenAPI 3.1 uses as is).

use schemars::SchemaGenerator;
use schemars::generate::{Contract, SchemaSettings};
use serde_json::{Map, Value, json};

use super::ErrorBody;
use super::routes::{Route, routes};

/// The API's version, in the document and in its paths (`/api/v1`).
const API_VERSION: &str = "1";

/// The OpenAPI document served at `/api/openapi.json`.
pub fn openapi() -> Value {
    // Answers are what the server writes, bodies what it reads: each type is described for
    // its direction (a defaulted field is required in an answer, optional in a body).
    let mut answers = generator(Contract::Serialize);
    let mut bodies = generator(Contract::Deserialize);
    let error = answers.subschema_for::<ErrorBody>();
    let mut paths = Map::new();
    for route in routes() {
        let operation = operation(&route, &mut answers, &mut bodies, &error);
        let path = paths
            .entry(format!("/api/v1{}", route.path))
            .or_insert_with(|| Value::Object(Map::new()));
        path[route.method] = operation;
    }
    let mut schemas = answers.take_definitions(true);
    for (name, schema) in bodies.take_definitions(true) {
        // A type both read and written keeps its answer form unless the two differ; then
        // the body form gets a name of its own.
        match schemas.get(&name) {
            Some(existing) if *existing != schema => {
                schemas.insert(format!("{name}Input"), schema);
            }
            Some(_) => {}
            None => {
                schemas.insert(name, schema);
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "workflow-worker",
            "version": API_VERSION,
            "description": "Save workflows, start, signal, cancel, retry, pause and resume \
                executions, read their history, act on many at once, and watch the queue. \
                Errors answer {\"error\": {\"code\", \"message\"}}.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn generator(contract: Contract) -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|settings| {
            settings.definitions_path = "/components/schemas".into();
            settings.meta_schema = None;
            settings.contract = contract;
        })
        .into_generator()
}

/// The operation object of one route.
fn operation(
    route: &Route,
    answers: &mut SchemaGenerator,
    bodies: &mut SchemaGenerator,
    error: &schemars::Schema,
) -> Value {
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect();
    if let Some(query) = route.query {
        let schema = query(bodies).to_value();
        let required: Vec<Value> = schema["required"].as_array().cloned().unwrap_or_default();
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                let mut property = property.clone();
                let description = property
                    .as_object_mut()
                    .and_then(|p| p.remove("description"))
                    .unwrap_or(Value::Null);
                parameters.push(json!({
                    "name": name,
                    "in": "query",
                    "required": required.contains(&Value::from(name.as_str())),
                    "description": description,
                    "schema": property,
                }));
            }
        }
    }
    let error_answer = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": error}},
        })
    };
    let (status, answer) = route.answers;
    let answer = answer(answers);
    let mut responses = Map::new();
    responses.insert(
        status.as_u16().to_string(),
        json!({
            "description": status.canonical_reason().unwrap_or("success"),
            "content": {"application/json": {"schema": answer}},
        }),
    );
    if let Some((status, meaning)) = route.also {
        responses.insert(
            status.as_u16().to_string(),
            json!({
                "description": meaning,
                "content": {"application/json": {"schema": answer}},
            }),
        );
    }
    let mut errors = vec![
        (400, "malformed input"),
        (401, "a token is required and was not given"),
    ];
    if route.action {
        errors.push((403, "the API is read-only"));
        errors.push((415, "the body is not JSON"));
    }
    for status in route.errors {
        errors.push((
            status.as_u16(),
            status.canonical_reason().unwrap_or("error"),
        ));
    }
    errors.push((500, "internal error"));
    errors.push((503, "the database is unavailable"));
    for (status, description) in errors {
        responses.insert(status.to_string(), error_answer(description));
    }
    let mut operation = json!({
        "operationId": route.operation_id,
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(body) = route.body {
        operation["requestBody"] = json!({
            "required": true,
            "content": {"application/json": {"schema": body(bodies)}},
        });
    }
    operation
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in `value`.
    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    match (key.as_str(), field) {
                        ("$ref", Value::String(target)) => found.push(target),
                        _ => refs(field, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }

    #[test]
    fn every_route_is_documented_and_every_reference_resolves() {
        let document = openapi();
        for route in routes() {
            let operation = &document["paths"][format!("/api/v1{}", route.path)][route.method];
            assert_eq!(operation["operationId"], route.operation_id);
            let success = route.answers.0.as_u16().to_string();
            assert!(
                operation["responses"][&success].is_object(),
                "{}",
                route.path
            );
            assert!(operation["responses"]["400"].is_object());
            assert_eq!(operation["requestBody"].is_object(), route.body.is_some());
        }
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for target in found {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("a reference outside the components: {target}"));
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{target} does not resolve"
            );
        }
    }
}
