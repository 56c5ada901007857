"""The published JSON Schema of workflow definitions (docs/workflow-definition.schema.json),
checked with a reference validator (python-jsonschema) the way a frontend would use it: the
examples pass, and the misspellings the worker refuses are refused by the schema too."""

import json
import pathlib

import jsonschema
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "workflow-definition.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def test_the_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.json")), ids=lambda p: p.name)
def test_the_examples_are_valid(path):
    VALIDATOR.validate(json.loads(path.read_text()))


HELLO = {
    "name": "hello",
    "nodes": [
        {"id": "start", "type": "trigger"},
        {
            "id": "say",
            "type": "code",
            "config": {"language": "python", "code": "print(1)"},
            "timeout": 30,
            "retry": {"max_attempts": 3, "initial_backoff": 1, "multiplier": 2, "max_backoff": 60},
        },
    ],
    "edges": [{"from": "start", "to": "say"}],
}


def test_a_complete_definition_is_valid():
    VALIDATOR.validate(HELLO)


@pytest.mark.parametrize(
    "where, key",
    [
        (lambda d: d["nodes"][1], "retries"),
        (lambda d: d["nodes"][1], "timout"),
        (lambda d: d, "edge"),
        (lambda d: d["edges"][0], "too"),
        (lambda d: d["nodes"][1]["retry"], "backoff"),
    ],
)
def test_unknown_keys_are_refused(where, key):
    definition = json.loads(json.dumps(HELLO))
    where(definition)[key] = 1
    errors = list(VALIDATOR.iter_errors(definition))
    assert errors, f"{key} was accepted"
    assert any(key in error.message for error in errors), [e.message for e in errors]


def test_missing_nodes_and_wrong_types_are_refused():
    assert not VALIDATOR.is_valid({"name": "x"})
    assert not VALIDATOR.is_valid({"name": "x", "nodes": [{"id": "a"}]})
    assert not VALIDATOR.is_valid({"name": "x", "nodes": [], "timeout": -1})
