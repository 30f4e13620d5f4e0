"""A provider setting that every key id is made of (an AWS region, a Key Vault's URL, a Google
project, location and key ring) shows in plans, state and the audit trail with each id: it
cannot be hidden, so deriving it from a sensitive variable is an error at its attribute, before
anything is planned or changed, instead of a secret printed in every plan."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Workspace

CASES = {
    "aws": ('region = var.hidden\n  endpoint = "embedded"', "eu-west-1", "region"),
    "azure": ('vault_url = var.hidden\n  endpoint = "embedded"', "https://secret-payments.vault.azure.net", "vault_url"),
    "gcp": (
        'project = "p1"\n  location = "europe-west1"\n  key_ring = var.hidden\n  endpoint = "embedded"',
        "secret-ring",
        "key_ring",
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_a_setting_that_makes_every_key_id_cannot_be_sensitive(workspace: Workspace, kind: str) -> None:
    settings, value, attribute = CASES[kind]
    workspace.write(
        f"""variable "hidden" {{
  type      = string
  sensitive = true
  default   = "{value}"
}}

source "software" "local" {{}}

provider "{kind}" "main" {{
  {settings}
}}

key "k" {{
  algorithm = "EC_P256"
  source    = source.software.local
  targets   = [provider.{kind}.main]
}}
"""
    )
    for command in ("validate", "plan", "apply"):
        result = workspace.keyplan(command, *(["-auto-approve"] if command == "apply" else []))
        assert result.code == 1, (command, result.output)
        assert f"`{attribute}` of the provider \"{kind}\" block {kind}.main is not valid" in result.stderr
        assert "it derives from a sensitive value" in result.stderr and "Traceback" not in result.output
        assert value not in result.output, command
    assert not workspace.state_path.exists(), "nothing was planned or changed"
