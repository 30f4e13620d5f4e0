"""The S3 state backend against moto's server mode, beyond the conformance suite: what S3
received (conditional headers' effect, SSE-KMS, versions) and the errors users hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyplan.state import StateError, StateErrorKind
from keyplan.state.backend import LockInfo
from providers.s3state import S3Backend, S3Settings
from providers.s3state.testing import MotoServer
from tests.state_servers import moto  # noqa: F401 - fixture


def _backend(server: MotoServer, bucket: str, **extra: object) -> S3Backend:
    settings = S3Settings.model_validate(
        {"bucket": bucket, "key": "k/state.json", "endpoint": server.url, "credentials": "local", **extra}
    )
    return S3Backend(settings)


def test_every_object_is_encrypted_with_the_named_kms_key(moto: MotoServer) -> None:  # noqa: F811
    bucket = moto.new_bucket()
    backend = _backend(moto, bucket, kms_key_id="alias/keyplan-state")
    backend.write("default", b"{}", None)
    backend.append_journal("default", 7, b"line\n")
    backend.try_lock(LockInfo.for_this_process("apply"))
    client = moto.client()
    for key in ("k/state.json", "k/state.json.journal/000000000007", "k/state.json.lock"):
        head = client.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"].endswith("alias/keyplan-state"), key


def test_a_versioned_bucket_keeps_every_state_written(moto: MotoServer) -> None:  # noqa: F811
    bucket = moto.new_bucket(versioned=True)
    backend = _backend(moto, bucket)
    version = backend.write("default", b'{"serial": 1}', None)
    backend.write("default", b'{"serial": 2}', version)
    versions = moto.client().list_object_versions(Bucket=bucket, Prefix="k/state.json")["Versions"]
    bodies = sorted(
        moto.client().get_object(Bucket=bucket, Key="k/state.json", VersionId=v["VersionId"])["Body"].read()
        for v in versions
        if v["Key"] == "k/state.json"
    )
    assert bodies == [b'{"serial": 1}', b'{"serial": 2}']


def test_other_workspaces_live_under_the_prefix(moto: MotoServer) -> None:  # noqa: F811
    bucket = moto.new_bucket()
    backend = _backend(moto, bucket, workspace_key_prefix="workspaces")
    backend.write("dev", b"{}", None)
    keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["workspaces/dev/k/state.json"]
    assert backend.workspaces() == ["default", "dev"]


def test_a_missing_bucket_is_named(moto: MotoServer) -> None:  # noqa: F811
    with pytest.raises(StateError) as caught:
        _backend(moto, "no-such-keyplan-bucket").read("default")
    assert caught.value.kind is StateErrorKind.NOT_FOUND and "no-such-keyplan-bucket" in caught.value.summary


def test_an_unreachable_endpoint_is_a_diagnostic(tmp_path: Path) -> None:
    backend = S3Backend(S3Settings(bucket="b-b-b", key="k", endpoint="http://127.0.0.1:9", credentials="local"))
    with pytest.raises(StateError) as caught:
        backend.try_lock(LockInfo.for_this_process("apply"))
    assert caught.value.kind is StateErrorKind.UNREACHABLE and "nothing was lost" not in caught.value.summary


def test_small_writes_send_their_body_with_the_headers(moto: MotoServer) -> None:  # noqa: F811
    """No `Expect: 100-continue` round trip for journal groups, locks and audit entries; a large
    state document keeps it."""
    backend = _backend(moto, moto.new_bucket())
    sent: list[tuple[str, bool]] = []
    backend.client.meta.events.register(
        "before-send.s3.PutObject", lambda request, **_: sent.append((request.url, "Expect" in request.headers))
    )
    backend.append_journal("default", 1, b"line\n" * 100)
    backend.try_lock(LockInfo.for_this_process("apply"))
    version = backend.write("default", b"{}", None)
    backend.write("default", b" " * (2 << 20), version)
    assert [expect for _, expect in sent] == [False, False, False, True], sent
    assert backend.read("default").data == b" " * (2 << 20)
