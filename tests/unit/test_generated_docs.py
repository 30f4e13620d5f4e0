"""The committed JSON Schemas and settings reference are exactly what the code generates, so
neither can drift from the models. Regenerate with `python -m keyplan.schemas` and
`python -m keyplan.reference`."""

from __future__ import annotations

from keyplan import reference, schemas


def test_committed_schemas_match_the_models() -> None:
    for name, schema in schemas.documents().items():
        committed = (schemas.SCHEMA_DIR / name).read_text()
        assert committed == schemas.render(schema), f"schemas/{name} is stale: run python -m keyplan.schemas"


def test_committed_settings_reference_matches_the_plugins() -> None:
    assert reference.REFERENCE.read_text() == reference.render(), "docs/reference.md is stale: run python -m keyplan.reference"
