"""Approvals signed where approvers keep their keys: an ssh-ed25519 key in a real `ssh-agent`
(keys added with `ssh-add`, signer listed in OpenSSH format) and an Ed25519 key pair inside a
real SoftHSM2 token (CKK_EC_EDWARDS, CKM_EDDSA) reached through the PKCS#11 signer plugin."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from providers.pkcs11 import find_softhsm_module
from providers.pkcs11.devtoken import init_dev_token
from tests.e2e.conftest import Workspace

PIN, SO_PIN = "approver-pin-1234", "approver-so-pin-5678"

CONFIG = """
keyplan {
  approvals {
    signers      = [%s]
    required     = 1
    required_for = { delete = 2 }
  }
}

variable "apps" {
  type    = set(string)
  default = ["payments", "ledger"]
}

source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "app" {
  for_each  = var.apps
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""

ONE_SIGNER = CONFIG.replace("    required_for = { delete = 2 }\n", "")


@dataclass
class Agent:
    socket: str
    pid: int
    directory: Path

    @property
    def env(self) -> dict[str, str]:
        return {"SSH_AUTH_SOCK": self.socket}

    def new_key(self, name: str, kind: str = "ed25519", *, add: bool = True) -> str:
        """Make a key with ssh-keygen, add it to the agent, return its OpenSSH public line."""
        path = self.directory / name
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", name, "-f", str(path)], check=True)
        if add:
            subprocess.run(["ssh-add", "-q", str(path)], check=True, env={**os.environ, **self.env}, capture_output=True)
        return (self.directory / f"{name}.pub").read_text().strip()

    def fingerprint(self, name: str) -> str:
        shown = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(self.directory / f"{name}.pub")],
            check=True, capture_output=True, text=True,
        ).stdout
        return shown.split()[1]


@pytest.fixture
def agent() -> Iterator[Agent]:
    if shutil.which("ssh-agent") is None:
        pytest.fail("ssh-agent is missing: make test installs openssh-client")
    directory = Path(tempfile.mkdtemp(prefix="kp-agent-"))  # a short path: unix sockets have a length limit
    socket_path = str(directory / "agent.sock")
    started = subprocess.run(["ssh-agent", "-s", "-a", socket_path], check=True, capture_output=True, text=True).stdout
    match = re.search(r"SSH_AGENT_PID=(\d+)", started)
    assert match, started
    pid = int(match.group(1))
    try:
        yield Agent(socket_path, pid, directory)
    finally:
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def token(workspace: Workspace) -> dict[str, str]:
    """A SoftHSM2 token for approvers' keys (no managed key lives there)."""
    created = init_dev_token(workspace.path / "approver-token", "approvals", PIN, SO_PIN)
    return {"SOFTHSM2_CONF": str(created.conf_path), "KEYPLAN_HSM_PIN": PIN}


def plan(workspace: Workspace, name: str, *args: str) -> Path:
    planfile = workspace.path / name
    result = workspace.keyplan("plan", f"-out={planfile}", *args)
    assert result.code == 0, result.output
    return planfile


def token_signer(workspace: Workspace, token: dict[str, str], label: str, name: str) -> tuple[str, str]:
    """`keyplan hsm signer-key`: the signer line and the -signer URI it prints."""
    made = workspace.keyplan(
        "hsm", "signer-key", label, "-token", "approvals", "-module", str(find_softhsm_module()), "-name", name, env=token
    )
    assert made.code == 0, made.output
    line = re.search(r'\{ name = "%s", public_key = "ed25519:[^"]+" \}' % name, made.stdout)
    uri = re.search(r"-signer '(pkcs11:[^']+)'", made.stdout)
    assert line and uri, made.stdout
    return line.group(0), uri.group(1)


def test_an_ssh_agent_key_and_a_token_key_approve_a_deletion(
    workspace: Workspace, agent: Agent, token: dict[str, str]
) -> None:
    bob_public = agent.new_key("bob@review")
    agent.new_key("rsa-key", "rsa")  # not Ed25519: the agent holds it, but it cannot sign approvals
    alice_line, alice_uri = token_signer(workspace, token, "alice-approvals", "alice")
    assert "pin" not in alice_uri.lower().replace("pin-source=env:keyplan_hsm_pin", "")
    workspace.write(CONFIG % ", ".join([alice_line, '{ name = "bob", public_key = "%s" }' % bob_public]))

    created = plan(workspace, "create.kpplan")
    by_agent = workspace.keyplan("approve", str(created), "-ssh-agent", "-name", "bob", env=agent.env)
    assert by_agent.code == 0, by_agent.output
    approval = json.loads(Path(f"{created}.approvals.json").read_text())[0]
    assert approval["signer"] == "bob" and approval["public_key"].startswith("ed25519:")
    assert workspace.keyplan("apply", str(created)).code == 0

    deletion = plan(workspace, "delete.kpplan", "-var", 'apps=["payments"]')
    assert workspace.keyplan("approve", str(deletion), "-ssh-agent", "-name", "bob", env=agent.env).code == 0
    short = workspace.keyplan("apply", str(deletion), "-var", 'apps=["payments"]')
    assert short.code == 1 and "has 1 (bob)" in short.stderr and "1 more from: alice" in short.stderr
    by_token = workspace.keyplan("approve", str(deletion), "-signer", alice_uri, "-name", "alice", env=token)
    assert by_token.code == 0, by_token.output
    applied = workspace.keyplan("apply", str(deletion), "-var", 'apps=["payments"]')
    assert applied.code == 0, applied.output
    audit = [json.loads(line) for line in (workspace.path / ".keyplan" / "audit.jsonl").read_text().splitlines()]
    assert any(e["action"] == "schedule_deletion" and sorted(e["approvers"]) == ["alice", "bob"] for e in audit)


def test_the_agent_key_is_chosen_by_fingerprint_or_comment(workspace: Workspace, agent: Agent) -> None:
    bob_public = agent.new_key("bob@review")
    agent.new_key("bob@laptop")
    workspace.write(ONE_SIGNER % ('{ name = "bob", public_key = "%s" }' % bob_public))
    created = plan(workspace, "create.kpplan")

    ambiguous = workspace.keyplan("approve", str(created), "-ssh-agent", "-name", "bob", env=agent.env)
    assert ambiguous.code == 1 and "Several keys in the SSH agent" in ambiguous.stderr
    assert agent.fingerprint("bob@review") in ambiguous.stderr and "-ssh-key" in ambiguous.stderr

    wrong = workspace.keyplan("approve", str(created), "-ssh-agent", "-ssh-key", "bob@laptop", "-name", "bob", env=agent.env)
    assert wrong.code == 0, wrong.output
    refused = workspace.keyplan("apply", str(created))
    assert refused.code == 1 and "by a key the approvals block does not list" in refused.stderr

    chosen = workspace.keyplan(
        "approve", str(created), "-ssh-agent", "-ssh-key", agent.fingerprint("bob@review"), "-name", "bob", env=agent.env
    )
    assert chosen.code == 0, chosen.output
    assert workspace.keyplan("apply", str(created)).code == 0


def test_signer_problems_are_diagnostics(workspace: Workspace, agent: Agent, token: dict[str, str]) -> None:
    agent.new_key("rsa-only", "rsa")
    workspace.write(ONE_SIGNER % '{ name = "bob", public_key = "ed25519:%s" }' % ("A" * 43 + "="))
    created = plan(workspace, "create.kpplan")

    def refused(*args: str, env: dict[str, str] | None = None) -> str:
        result = workspace.keyplan("approve", str(created), *args, env=env or {})
        assert result.code == 1 and "Traceback" not in result.output, result.output
        assert not Path(f"{created}.approvals.json").exists()
        return result.stderr

    assert "No matching key in the SSH agent" in refused("-ssh-agent", env=agent.env)
    assert "rsa-only" in refused("-ssh-agent", env=agent.env)
    assert "No SSH agent" in refused("-ssh-agent", env={"SSH_AUTH_SOCK": ""})
    assert "Cannot reach the SSH agent" in refused("-ssh-agent", env={"SSH_AUTH_SOCK": str(agent.directory / "gone")})
    assert "Choose one signer" in refused("-ssh-agent", "-key", "x.pem", env=agent.env)
    assert "Unknown signer" in refused("-signer", "yubikey:slot=9c")
    module = find_softhsm_module()
    missing = f"pkcs11:token=approvals;object=nobody?module-path={module}"
    assert "No signer key in the token" in refused("-signer", missing, env=token)
    assert "Wrong PIN" in refused("-signer", missing, env={**token, "KEYPLAN_HSM_PIN": "not-the-pin"})
    assert "No PIN" in refused("-signer", missing, env={**token, "KEYPLAN_HSM_PIN": ""})
    assert "Invalid PKCS#11 signer URI" in refused("-signer", "pkcs11:token=approvals?pin-value=1234", env=token)
