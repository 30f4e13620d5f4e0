"""`keyplan discover` output: which keys it offers, which it comments out and why, and that
the blocks it writes load as keyplan configuration next to the existing one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from keyplan.config.load import load_config
from keyplan.discovery import classify, render_discovery
from keyplan.provider import KeyState, RemoteKey
from keyplan.state.model import KeyRecord, MaterialVersion, State, TargetRecord

NOW = datetime(2026, 6, 1, tzinfo=UTC)

CONFIG = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
}

key "payments" {
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
}
"""


def held(address: str, targets: dict[str, TargetRecord] | None = None) -> KeyRecord:
    return KeyRecord(
        address=address,
        algorithm="AES_256",
        usage="encrypt",
        source="software.local",
        materials=[MaterialVersion(version=1, handle="h", fingerprint="kcv:000000", created_at=NOW)],
        targets=targets or {},
    )


def remote(remote_id: str, **fields: object) -> RemoteKey:
    values: dict[str, object] = {"state": KeyState.ENABLED, "enabled": True, "algorithm": "AES_256"}
    values.update(fields)
    return RemoteKey(remote_id=remote_id, **values)  # type: ignore[arg-type]


def test_discovered_blocks_load_and_unmanageable_keys_are_comments(tmp_path: Path) -> None:
    (tmp_path / "main.kp.hcl").write_text(CONFIG)
    config, diagnostics = load_config(tmp_path)
    assert config is not None, list(diagnostics)
    state = State(
        lineage="l1",
        keys={
            "key.payments": held("key.payments", {"aws.main": TargetRecord(remote_id="arn:payments")}),
            "key.legacy": held("key.legacy"),
            "key.odd": held("key.odd"),
        },
    )
    keys = [
        remote("arn:payments", address="key.payments", managed_by="keyplan-l1"),
        remote(
            "arn:legacy",
            address="key.legacy",
            managed_by="keyplan-l1",
            description='costs ${ops} "a lot"',
            aliases=("alias/legacy",),
            labels={"cost-center": "42", "a.b": "c"},
            enabled=False,
            state=KeyState.DISABLED,
        ),
        remote("arn:foreign", aliases=("alias/by-hand/prod",)),
        remote("arn:theirs", managed_by="keyplan-l2", address="key.payments"),
        remote("arn:odd", algorithm=None, address="key.odd", managed_by="keyplan-l1"),
    ]
    found = classify(keys, state, "aws.main")
    assert {f.key.remote_id: f.status for f in found} == {
        "arn:payments": "managed",
        "arn:legacy": "tagged",
        "arn:foreign": "unmanaged",
        "arn:theirs": "other",
        "arn:odd": "tagged",
    }
    text = render_discovery("aws.main", found, state, config, NOW)
    assert "already managed by this state as key.payments" in text
    assert "#   keyplan import 'key.legacy' aws.main 'arn:legacy'\n" in text
    assert "keyplan import 'key.by-hand_prod' aws.main 'arn:foreign'  # refused: keyplan does not hold" in text
    assert "managed by another keyplan state (keyplan-l2)" in text
    assert "its algorithm is not one keyplan imports" in text
    assert '# key "by-hand_prod" {' in text

    (tmp_path / "discovered.kp.hcl").write_text(text)
    extended, diagnostics = load_config(tmp_path)
    assert extended is not None, list(diagnostics)
    assert sorted(extended.keys) == ["key.legacy", "key.payments"], "only the manageable key is live HCL"
    legacy = extended.keys["key.legacy"]
    assert legacy.description == 'costs ${ops} "a lot"' and legacy.enabled is False
    assert legacy.labels == {"cost-center": "42", "a.b": "c"} and legacy.aliases == ("alias/legacy",)
    assert legacy.targets == ("aws.main",) and legacy.source == "software.local"
