"""Validating documents against the published JSON schemas, with one validator per schema.

`jsonschema.validate` checks the schema against its metaschema and builds a validator on every
call (40 to 70 ms of CPU for the SARIF and plan schemas); the suite validates the same few
schemas dozens of times."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
from jsonschema.protocols import Validator


@functools.lru_cache(maxsize=32)
def _validator(text: str) -> Validator:
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """As `jsonschema.validate`: raises `jsonschema.ValidationError` (the best match) when
    `instance` does not conform."""
    error = jsonschema.exceptions.best_match(_validator(json.dumps(schema, sort_keys=True)).iter_errors(instance))
    if error is not None:
        raise error
