"""`validate` checks every setting offline (what it passes, plan accepts); Unicode identifiers
that HCL allows parse; a saved plan's configuration digest is over what the configuration
means, so comments and formatting do not make it stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyplan.config import load_config, validate_config

HEAD = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}
"""

KEY = """
key "data" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def _diagnostics(directory: Path, text: str) -> list[str]:
    (directory / "main.kp.hcl").write_text(text)
    config, diagnostics = load_config(directory, environ={})
    if config is not None:
        diagnostics.extend(validate_config(config))
    return [f"{d.severity.value} {d.summary} | {d.detail} | {d.range}" for d in diagnostics]


@pytest.mark.parametrize(
    "text, words",
    [
        (HEAD.replace('"eu-west-1"', '"eu west 1"') + KEY, ["region", "main.kp.hcl:5", "eu-west-1"]),
        (HEAD.replace('"eu-west-1"', '"EU-WEST-1; rm"') + KEY, ["region", "main.kp.hcl:5", "eu-west-1"]),
        (HEAD.replace('"embedded"', '"http://[::1"') + KEY, ["endpoint", "main.kp.hcl:6", "https://"]),
        (HEAD.replace('"embedded"', '"ftp://kms.example"') + KEY, ["endpoint", "https://"]),
        (HEAD.replace('"embedded"', '"kms.example.com"') + KEY, ["endpoint", "https://"]),
        ('keyplan {\n  required_version = "1"\n}\n' + HEAD + KEY, ["required_version", "main.kp.hcl:2"]),
        ('keyplan {\n  state "locl" {\n    path = "s.json"\n  }\n}\n' + HEAD + KEY, ["state backend", "local", "main.kp.hcl:2"]),
    ],
    ids=["region-space", "region-junk", "endpoint-broken", "endpoint-scheme", "endpoint-no-scheme",
         "keyplan-attribute", "backend-kind"],
)
def test_validate_checks_every_setting_offline(tmp_path: Path, text: str, words: list[str]) -> None:
    found = _diagnostics(tmp_path, text)
    errors = [d for d in found if d.startswith("error")]
    assert errors, found
    for word in words:
        assert any(word in d for d in errors), (word, errors)


def test_good_regions_and_endpoints_pass(tmp_path: Path) -> None:
    for region, endpoint in [("eu-west-1", "embedded"), ("us-gov-west-1", "https://kms.local:8443"), ("cn-north-1", "http://127.0.0.1:4566")]:
        text = HEAD.replace('"eu-west-1"', f'"{region}"').replace('"embedded"', f'"{endpoint}"') + KEY
        assert not [d for d in _diagnostics(tmp_path, text) if d.startswith("error")], (region, endpoint)


def test_unicode_identifiers_parse(tmp_path: Path) -> None:
    text = HEAD + """
variable "größe" {
  type    = string
  default = "groß"
}

locals {
  schlüssel = "daten-${var.größe}"
  ключ      = upper(local.schlüssel)
  鍵_名前   = [for 項目 in ["a"] : "${項目}-${local.ключ}"]
}

key "données" {
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main]
  description = local.鍵_名前[0]
}
"""
    (tmp_path / "main.kp.hcl").write_text(text)
    config, diagnostics = load_config(tmp_path, environ={})
    assert config is not None, [str(d) for d in diagnostics]
    assert config.keys["key.données"].description == "a-DATEN-GROSS"


def _digest(directory: Path, text: str, **environ: str) -> str:
    (directory / "main.kp.hcl").write_text(text)
    config, diagnostics = load_config(directory, environ=environ)
    assert config is not None, [str(d) for d in diagnostics]
    return config.digest


def test_the_configuration_digest_ignores_comments_layout_and_file_names(tmp_path: Path) -> None:
    base = _digest(tmp_path, HEAD + KEY)
    commented = HEAD.replace("provider", "# the cloud\nprovider", 1) + "\n\n// trailing remark\n" + KEY.replace(
        "  algorithm =", "  /* block comment */\n  algorithm   ="
    )
    assert _digest(tmp_path, commented) == base
    assert _digest(tmp_path, HEAD + KEY.replace('"AES_256"', '"AES_128"')) != base
    assert _digest(tmp_path, HEAD.replace("eu-west-1", "eu-west-2") + KEY) != base


def test_the_digest_follows_variable_values_but_never_hashes_a_sensitive_one(tmp_path: Path) -> None:
    text = HEAD + 'variable "d" {\n  type = string\n}\nvariable "pin" {\n  type = string\n  sensitive = true\n}\n' + KEY.replace(
        'targets   = [provider.aws.main]', 'targets   = [provider.aws.main]\n  description = var.d'
    )
    one = _digest(tmp_path, text, KEYPLAN_VAR_d="one", KEYPLAN_VAR_pin="1234")
    assert _digest(tmp_path, text, KEYPLAN_VAR_d="two", KEYPLAN_VAR_pin="1234") != one
    assert _digest(tmp_path, text, KEYPLAN_VAR_d="one", KEYPLAN_VAR_pin="9999") == one, "a guessable hash of a PIN"


def test_the_digest_written_key_by_key_is_that_of_the_whole_document(tmp_path: Path) -> None:
    """The digest is written section by section (a configuration of 100,000 keys does not fit one
    JSON text in memory): it stays the hash of the canonical JSON of the whole document, so saved
    plans keep their digests."""
    import hashlib

    from keyplan.config.load import SENSITIVE_MARK, _without_positions
    from keyplan.config.values import canonical_json

    text = (
        HEAD
        + 'variable "pin" {\n  type = string\n  sensitive = true\n}\n'
        + 'variable "team" {\n  type = string\n  default = "ops"\n}\n'
        + KEY
        + """
key "many" {
  for_each    = { "b-é" = "x", "a" = "y", "c_range" = "z" }
  algorithm   = "AES_256"
  source      = source.software.local
  targets     = [provider.aws.main]
  labels      = { team = var.team, range = each.value }
  aliases     = ["alias/${each.key}"]
  description = "key ${each.key}"
  rotation {
    every = "90d"
  }
}
"""
    )
    (tmp_path / "main.kp.hcl").write_text(text)
    config, diagnostics = load_config(tmp_path, environ={"KEYPLAN_VAR_pin": "1234"})
    assert config is not None, [str(d) for d in diagnostics]
    document = config.model_dump(mode="json", exclude={"directory", "files", "digest", "variables"})
    document["variables"] = {n: SENSITIVE_MARK if v.sensitive else v.value for n, v in config.variables.items()}
    whole = hashlib.sha256(canonical_json(_without_positions(document)).encode()).hexdigest()
    assert config.digest == whole
    assert len(config.keys) == 4
