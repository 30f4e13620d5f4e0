"""Key addresses given on the command line: one that names no key is an error, never a plan that
silently leaves out the rotation or the selection asked for; and an address written the way
keyplan shows it (control and invisible characters of a for_each key escaped) names that key."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Workspace, emulator_counts

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
  consistency_window_seconds = 0
}

key "data" {
  for_each  = toset(["payments", "z\\u202eevil", "bell\\u0007"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


@pytest.mark.parametrize("flag", ["-replace", "-target"])
def test_an_address_that_names_no_key_is_an_error(workspace: Workspace, flag: str) -> None:
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    before, counts = workspace.state_path.read_bytes(), emulator_counts(workspace.path)
    for command in (("plan",), ("apply", "-auto-approve")):
        result = workspace.keyplan(*command, f"{flag}=key.data[\"paymnets\"]")
        assert result.code == 1, result.output
        assert "Traceback" not in result.output
        assert f"{flag} names no key" in result.stderr
        assert 'key.data["payments"]' in result.stderr  # the close match is suggested
    assert workspace.state_path.read_bytes() == before
    assert emulator_counts(workspace.path) == counts


def test_an_address_as_keyplan_shows_it_names_the_key(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    listed = workspace.keyplan("state", "list").stdout.splitlines()
    shown = next(line for line in listed if "evil" in line)
    assert shown == 'key.data["z\\u202eevil"]'  # the bidirectional override is shown escaped
    assert workspace.keyplan("state", "show", shown).code == 0

    planned = workspace.keyplan("plan", "-json", f"-replace={shown}")
    assert planned.code == 0, planned.output
    rotated = [c["address"] for c in json.loads(planned.stdout)["changes"] if c["actions"] == ["rotate"]]
    assert rotated == ['key.data["z\u202eevil"]']
    bell = workspace.keyplan("plan", "-json", '-target=key.data["bell\\x07"]')  # the terminal's form
    assert bell.code == 0, bell.output
    assert {c["address"] for c in json.loads(bell.stdout)["changes"]} == {'key.data["bell\\u0007"]'}


def test_verify_reads_an_address_as_keyplan_shows_it(workspace: Workspace) -> None:
    workspace.write(CONFIG)
    assert workspace.keyplan("apply", "-auto-approve").code == 0
    shown = 'key.data["z\\u202eevil"]'
    verified = workspace.keyplan("verify", shown)
    assert verified.code == 0, verified.output
    assert "\u202e" not in verified.output
