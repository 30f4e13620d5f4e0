"""End to end through the CLI against every state backend with the same test code: the local
file, S3 (moto's server mode, a separate process reached through boto3) and PostgreSQL (a
throwaway cluster of the real server). plan / apply / drift / state commands, workspaces,
two applies at once, a killed apply, migration between backends, and the errors users hit."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from keyplan.state.store import StateStore
from keyplan.state.workspaces import BACKEND_RECORD, open_backend
from providers.pgstate.testing import PostgresCluster
from providers.s3state.testing import MotoServer, moto_server
from tests.e2e.conftest import KEYPLAN_BIN, ForkedKeyplan, Result, Workspace
from tests.state_servers import CuttableProxy, moto, postgres  # noqa: F401 - fixtures

KEYS = """
source "software" "local" {}

provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
  # the embedded emulator (without its realistic profile) lists a new key at once: an apply after
  # one killed (or cut off from its state) while creating a key has no listing delay to wait out
  consistency_window_seconds = 0
}

key "app" {
  for_each  = toset(var.apps)
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.aws.main]
  aliases   = ["alias/${keyplan.workspace}-${each.key}"]
  labels = {
    app       = each.key
    workspace = keyplan.workspace
  }
}

variable "apps" {
  type    = list(string)
  default = ["payments", "ledger"]
}
"""


@dataclass
class Team:
    """One backend, configured in a `keyplan { state ... }` block, and how to look inside it."""

    kind: str
    attributes: dict[str, Any]
    workspace: Workspace
    env: dict[str, str] = field(default_factory=dict)

    def block(self) -> str:
        lines = [f"    {name} = {json.dumps(value)}" for name, value in self.attributes.items()]
        return 'keyplan {\n  state "%s" {\n%s\n  }\n}\n' % (self.kind, "\n".join(lines))

    def write(self, keys: str = KEYS) -> None:
        self.workspace.write(self.block() + keys)

    def keyplan(self, *args: str, **kwargs: Any) -> Result:
        return self.workspace.keyplan(*args, env={**self.env, **kwargs.pop("env", {})}, **kwargs)

    def store(self, workspace: str = "default") -> StateStore:
        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            return StateStore(open_backend(self.kind, self.attributes, self.workspace.path), workspace)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def state(self, workspace: str = "default") -> Any:
        store = self.store(workspace)
        try:
            state = store.read()
        finally:
            store.backend.close()
        return None if state is None else state.model_dump(mode="json")

    def spawn(self, *args: str, latency_ms: int = 0, answers: bool = False, **env: str) -> ForkedKeyplan:
        """`keyplan` as its own process, its output (standard error included) on a pipe; with
        `answers`, its standard input is a pipe the test answers a confirmation on."""
        environment = {**os.environ, **self.env, "KEYPLAN_EMULATOR_LATENCY_MS": str(latency_ms), **env}
        return ForkedKeyplan(self.workspace.path, *args, env=environment, answers=answers)


@pytest.fixture(params=["local", "s3", "pg"])
def team(request: pytest.FixtureRequest, workspace: Workspace) -> Iterator[Team]:
    if request.param == "local":
        yield Team("local", {"path": "shared/keyplan.kpstate.json"}, workspace)
    elif request.param == "s3":
        server: MotoServer = request.getfixturevalue("moto")
        attributes = {
            "bucket": server.new_bucket(versioned=True),
            "key": "keyplan/team.kpstate.json",
            "region": "us-east-1",
            "endpoint": server.url,
            "credentials": "local",
        }
        yield Team("s3", attributes, workspace)
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        conn_str = cluster.create_database(f"k{uuid.uuid4().hex[:12]}")
        yield Team("pg", {"conn_str_env": "KEYPLAN_TEAM_PG", "schema_name": "keyplan"}, workspace, {"KEYPLAN_TEAM_PG": conn_str})


def _aws_keys(workspace: Workspace) -> list[str]:
    with workspace.aws() as (kms, _):
        return sorted(k["KeyArn"] for k in kms.list_keys()["Keys"])


def test_plan_apply_drift_and_state_commands(team: Team) -> None:
    team.write()
    assert team.keyplan("validate").code == 0
    applied = team.keyplan("apply", "-auto-approve")
    assert applied.code == 0, applied.output
    assert team.keyplan("plan", "-detailed-exitcode").code == 0
    state = team.state()
    assert sorted(state["keys"]) == ['key.app["ledger"]', 'key.app["payments"]']
    assert state["keys"]['key.app["ledger"]']["targets"]["aws.main"]["aliases"] == ["alias/default-ledger"]
    if team.kind != "local":
        assert not (team.workspace.path / "keyplan.kpstate.json").exists(), "remote state leaves no local copy"
    logged = team.keyplan("log", "-json")
    entries = json.loads(logged.stdout)
    assert logged.code == 0 and {"started", "ok"} <= {e["outcome"] for e in entries}, logged.output
    assert {e["address"] for e in entries if e["action"] == "create_key"} == set(state["keys"])
    assert team.keyplan("log", "-verify").code == 0
    local_trail = team.workspace.path / ".keyplan" / "audit.jsonl"
    assert local_trail.exists() == (team.kind == "local"), "the audit trail lives beside the state"
    listed = team.keyplan("state", "list")
    assert listed.stdout.split() == ['key.app["ledger"]', 'key.app["payments"]']
    assert "alias/default-payments" in team.keyplan("state", "show", 'key.app["payments"]').stdout
    pulled = team.keyplan("state", "pull")
    assert json.loads(pulled.stdout)["lineage"] == state["lineage"]
    drift = team.keyplan("drift", "-json")
    assert drift.code == 0, drift.output

    with team.workspace.aws() as (kms, _):
        kms.disable_key(KeyId=state["keys"]['key.app["ledger"]']["targets"]["aws.main"]["remote_id"])
    drifted = team.keyplan("drift", "-json")
    assert drifted.code == 2 and json.loads(drifted.stdout)["drift"], drifted.output

    backup = team.workspace.path / "pulled.json"
    backup.write_text(pulled.stdout)
    assert team.keyplan("state", "rm", 'key.app["ledger"]').code == 0
    assert sorted(team.state()["keys"]) == ['key.app["payments"]']
    refused = team.keyplan("state", "push", str(backup))
    assert refused.code == 1 and "not newer" in refused.stderr
    assert team.keyplan("state", "push", "-force", str(backup)).code == 0
    assert sorted(team.state()["keys"]) == ['key.app["ledger"]', 'key.app["payments"]']
    assert team.keyplan("apply", "-auto-approve").code == 0  # re-enables the key
    assert team.keyplan("plan", "-detailed-exitcode").code == 0
    assert len(_aws_keys(team.workspace)) == 2


def test_each_workspace_has_its_own_state(team: Team) -> None:
    team.write()
    assert team.keyplan("apply", "-auto-approve").code == 0
    created = team.keyplan("workspace", "new", "dev")
    assert created.code == 0, created.output
    assert team.keyplan("workspace", "show").stdout == "dev\n"
    dev_plan = team.keyplan("plan", "-json")
    assert {c["actions"][0] for c in json.loads(dev_plan.stdout)["changes"]} == {"create"}, "dev starts empty"
    assert team.keyplan("apply", "-auto-approve").code == 0
    dev = team.state("dev")
    assert dev["keys"]['key.app["payments"]']["targets"]["aws.main"]["labels"]["workspace"] == "dev"
    assert dev["lineage"] != team.state("default")["lineage"]
    assert team.keyplan("workspace", "list").stdout == "  default\n* dev\n"
    refused = team.keyplan("workspace", "delete", "dev")
    assert refused.code == 1 and "current workspace" in refused.stderr
    assert team.keyplan("workspace", "select", "default").code == 0
    assert team.keyplan("plan", "-detailed-exitcode").code == 0
    keeps = team.keyplan("workspace", "delete", "dev")
    assert keeps.code == 1 and "still manages 2 key(s)" in keeps.stderr
    assert team.keyplan("workspace", "delete", "-force", "dev").code == 0
    assert team.keyplan("workspace", "list").stdout == "* default\n"
    missing = team.keyplan("workspace", "select", "dve")
    assert missing.code == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.output
    assert len(_aws_keys(team.workspace)) == 4


def _read_until(process: ForkedKeyplan, words: str) -> str:
    """What `process` printed up to and including the first line holding `words`."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if words in line:
            return "".join(seen)
    raise AssertionError(f"keyplan ended (exit {process.wait(timeout=120)}) before printing {words!r}:\n" + "".join(seen))


def test_two_applies_at_once_never_both_apply(team: Team) -> None:
    team.write(KEYS.replace('["payments", "ledger"]', '["a", "b", "c", "d"]'))
    # The first apply takes the lock before it plans and keeps it while it asks for confirmation,
    # walks and commits: its question is the moment it certainly holds the lock.
    first = team.spawn("apply", answers=True)
    _read_until(first, "Do you want to perform these actions?")
    second = team.spawn("apply", "-auto-approve")
    second_out, _ = second.communicate(timeout=120)
    assert second.returncode == 1, second_out
    assert "Error acquiring the state lock" in second_out and "Operation: apply" in second_out
    assert "Traceback" not in second_out
    # A third waits for the lock (it says so in its debug log), through the first's whole walk and
    # commit: it plans only after the first released the lock, and finds nothing left to do.
    waiting = team.spawn("apply", "-auto-approve", "-lock-timeout=60s", KEYPLAN_LOG="DEBUG")
    waited = _read_until(waiting, "waiting for it")
    first_out, _ = first.communicate("yes\n", timeout=120)
    assert first.returncode == 0, first_out
    assert "Apply complete!" in first_out, first_out
    out, _ = waiting.communicate(timeout=120)
    assert waiting.returncode == 0 and "No changes" in out, waited + out
    keys = _aws_keys(team.workspace)
    assert len(keys) == 4, "no key was created twice"
    assert sorted(r["targets"]["aws.main"]["remote_id"] for r in team.state()["keys"].values()) == keys


def test_a_killed_apply_is_reported_cleared_and_converges(team: Team) -> None:
    team.write(KEYS.replace('["payments", "ledger"]', '["a", "b", "c", "d", "e", "f"]'))
    process = team.spawn("apply", "-auto-approve", "-parallelism", "3", latency_ms=150)
    assert process.stdout is not None
    seen = []
    done_address = ""
    for line in process.stdout:
        seen.append(line)
        if ": created at aws.main" in line:  # a key finished, others in flight
            process.send_signal(signal.SIGKILL)
            done_address = line.split(": created at", 1)[0].strip()
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    recovered = team.state()
    assert recovered is not None and recovered["keys"], "finished steps were journalled"
    # a key is reported done only once its state mutations are durable
    assert recovered["keys"][done_address]["targets"]["aws.main"]["remote_id"], "".join(seen)
    if team.kind == "local":
        assert team.store().current_lock() is None, "the OS released the lock with the killed process"
    elif team.kind == "pg":
        # the server released the session lock with the killed process's connection
        deadline = time.monotonic() + 10
        while (holder := team.store().current_lock()) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert holder is None
    else:
        locked = team.keyplan("plan")
        assert locked.code == 1 and "Error acquiring the state lock" in locked.stderr
        holder = team.store().current_lock()
        assert holder is not None and holder.pid == process.pid and holder.operation == "apply"
        assert f"keyplan force-unlock {holder.id}" in locked.stderr
        assert team.keyplan("force-unlock", holder.id, "-force").code == 0
    result = team.keyplan("apply", "-auto-approve", "-lock-timeout=10s")
    assert result.code == 0, result.output
    assert team.keyplan("plan", "-detailed-exitcode").code == 0
    keys = _aws_keys(team.workspace)
    assert len(keys) == 6, "every key exists exactly once\n" + "".join(seen) + result.output
    assert sorted(r["targets"]["aws.main"]["remote_id"] for r in team.state()["keys"].values()) == keys


def test_init_migrates_state_from_the_local_file(team: Team) -> None:
    if team.kind == "local":
        pytest.skip("migrates from the local file to the other backends")
    local = Team("local", {"path": "keyplan.kpstate.json"}, team.workspace)
    local.write()
    assert local.keyplan("apply", "-auto-approve").code == 0
    assert local.keyplan("workspace", "new", "dev").code == 0
    assert local.keyplan("apply", "-auto-approve").code == 0
    before = {name: local.state(name) for name in ("default", "dev")}

    team.write()
    changed = team.keyplan("plan")
    assert changed.code == 1 and "keyplan init -migrate-state" in changed.stderr
    migrated = team.keyplan("init", "-migrate-state")
    assert migrated.code == 0, migrated.output
    for name in ("default", "dev"):
        after = team.state(name)
        assert (after["lineage"], after["serial"], after["keys"]) == (
            before[name]["lineage"], before[name]["serial"], before[name]["keys"],
        )
    assert team.keyplan("plan", "-detailed-exitcode").code == 0
    assert team.keyplan("workspace", "select", "default").code == 0
    assert team.keyplan("plan", "-detailed-exitcode").code == 0

    # a target with another history is refused
    local.write()
    assert local.keyplan("init", "-reconfigure").code == 0
    other = team.workspace.path / "other.json"
    other.write_text(json.dumps({**before["default"], "lineage": "another-history"}))
    assert local.keyplan("state", "push", "-force", str(other)).code == 0
    team.write()
    refused = team.keyplan("init", "-migrate-state")
    assert refused.code == 1 and "another state" in refused.stderr


def _refused(team: Team, attributes: dict[str, Any], env: dict[str, str], *, says: str) -> Result:
    broken = Team(team.kind, attributes, team.workspace, env)
    broken.write()
    (team.workspace.path / BACKEND_RECORD).unlink(missing_ok=True)  # each case is a fresh directory's first run
    result = broken.keyplan("plan")
    assert result.code == 1 and "Traceback" not in result.output, result.output
    assert says in result.stderr, result.stderr
    return result


def test_backend_errors_are_diagnostics(team: Team) -> None:
    if team.kind == "local":
        pytest.skip("remote backends only")
    if team.kind == "s3":
        _refused(team, {**team.attributes, "bucket": "no-such-keyplan-bucket"}, team.env, says="does not exist")
        _refused(team, {**team.attributes, "endpoint": "http://127.0.0.1:9"}, team.env, says="Cannot reach S3")
        with moto_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as guarded:  # IAM authentication enforced
            wrong = {"AWS_ACCESS_KEY_ID": "AKIAKEYPLANWRONGKEY0", "AWS_SECRET_ACCESS_KEY": "wrong-secret-do-not-show"}
            attributes = {**team.attributes, "endpoint": guarded.url, "credentials": "default"}
            result = _refused(team, attributes, wrong, says="Access denied")
            assert "InvalidAccessKeyId" in result.stderr and "wrong-secret" not in result.output
    else:
        conn = team.env["KEYPLAN_TEAM_PG"]
        wrong = _refused(team, team.attributes, {"KEYPLAN_TEAM_PG": conn.replace("password=", "password=wrong-")},
                         says="Access denied")
        assert "wrong-" not in wrong.output, "no part of a password is shown"
        missing = re.sub(r"dbname=\S+", "dbname=no_such_keyplan_db", conn)
        _refused(team, team.attributes, {"KEYPLAN_TEAM_PG": missing}, says="The state database does not exist")
        _refused(team, team.attributes, {"KEYPLAN_TEAM_PG": re.sub(r"host=\S+", "host=/nonexistent", conn)},
                 says="Cannot reach the state database")


@pytest.mark.parametrize("kind", ["s3", "pg"])
def test_a_connection_dropped_mid_apply_is_a_diagnostic_and_loses_nothing(
    kind: str, workspace: Workspace, request: pytest.FixtureRequest
) -> None:
    """The store stays up; keyplan's connection to it goes away between two mutations."""
    proxy: CuttableProxy | None = None
    if kind == "s3":
        server: MotoServer = request.getfixturevalue("moto")
        proxy = CuttableProxy(int(server.url.rsplit(":", 1)[1]))
        request.addfinalizer(proxy.close)
        attributes = {"bucket": server.new_bucket(), "key": "keyplan/team.kpstate.json", "region": "us-east-1",
                      "endpoint": proxy.url, "credentials": "local"}
        team = Team("s3", attributes, workspace)
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        conn_str = cluster.create_database(f"k{uuid.uuid4().hex[:12]}")
        team = Team("pg", {"conn_str_env": "KEYPLAN_TEAM_PG", "schema_name": "keyplan"}, workspace,
                    {"KEYPLAN_TEAM_PG": conn_str})
    team.write(KEYS.replace('["payments", "ledger"]', '["a", "b", "c", "d", "e", "f"]'))
    process = team.spawn("apply", "-auto-approve", "-parallelism", "2", latency_ms=300)
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if ": created at aws.main" in line:  # a key finished, others in flight
            if proxy is not None:
                proxy.cut()
            else:
                with psycopg.connect(team.env["KEYPLAN_TEAM_PG"], autocommit=True) as admin:
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    )
            break
    seen.append(process.stdout.read())
    output = "".join(seen)
    assert process.wait(timeout=120) == 1, output
    assert "Traceback" not in output and "crashed" not in output, output
    assert ("Cannot reach S3" if kind == "s3" else "The connection to the state database dropped") in output, output
    if proxy is not None:
        proxy.restore()
        assert "keyplan force-unlock" in output, "the lock could not be released: the message says how to clear it"
    recovered = team.state()
    assert recovered is not None and recovered["keys"], "every mutation finished before the drop was kept\n" + output
    holder = team.store().current_lock()
    if holder is not None:
        assert holder.pid == process.pid
        assert team.keyplan("force-unlock", holder.id, "-force").code == 0
    converged = team.keyplan("apply", "-auto-approve")
    assert converged.code == 0, converged.output
    assert team.keyplan("plan", "-detailed-exitcode").code == 0
    keys = _aws_keys(team.workspace)
    assert len(keys) == 6, "every key exists exactly once"
    assert sorted(r["targets"]["aws.main"]["remote_id"] for r in team.state()["keys"].values()) == keys


def test_validate_checks_the_keyplan_block(workspace: Workspace) -> None:
    workspace.write('keyplan {\n  state "s4" {\n    bucket = "b"\n  }\n}\n' + KEYS)
    unknown = workspace.keyplan("validate")
    assert unknown.code == 1 and "Unknown state backend kind" in unknown.stderr and "local, pg, s3" in unknown.stderr
    workspace.write('keyplan {\n  state "s3" {\n    bucket = "team-bucket"\n    key = "k"\n    regoin = "x"\n  }\n}\n' + KEYS)
    misspelt = workspace.keyplan("validate")
    assert misspelt.code == 1 and "Unsupported argument" in misspelt.stderr and "Did you mean" in misspelt.stderr
    assert "main.kp.hcl:5:" in misspelt.stderr
    workspace.write('keyplan {\n  state "pg" {\n    schema_name = 7\n  }\n}\n' + KEYS)
    mistyped = workspace.keyplan("validate")
    assert mistyped.code == 1 and "Invalid argument value" in mistyped.stderr and "main.kp.hcl:3:" in mistyped.stderr


def test_the_ci_example_runs_against_shared_state(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "ci"
    copy = tmp_path / "ci"
    copy.mkdir()
    for name in ("review.sh", "nightly-drift.sh"):
        (copy / name).write_bytes((example / name).read_bytes())
        (copy / name).chmod(0o755)
    (copy / "team").mkdir()
    for name in ("main.kp.hcl", "run.sh"):
        (copy / "team" / name).write_bytes((example / "team" / name).read_bytes())
    (copy / "team" / "run.sh").chmod(0o755)
    env = {**os.environ, "PYTHON": str(KEYPLAN_BIN.parent / "python"), "KEYPLAN": str(KEYPLAN_BIN)}
    env.pop("KEYPLAN_WORKSPACE", None)
    result = subprocess.run(
        ["bash", str(copy / "team" / "run.sh")], capture_output=True, text=True, timeout=300, env=env,
        cwd=copy,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Apply complete!" in result.stdout and "drift: clean" in result.stdout
    assert "1 versions kept" in result.stdout
    assert not (copy / "team" / "keyplan.kpstate.json").exists()


def _lose_state(team: Team) -> None:
    """Delete the state document behind keyplan's back, as a mistaken rm, `aws s3 rm` or DELETE would."""
    if team.kind == "local":
        (team.workspace.path / str(team.attributes["path"])).unlink()
    elif team.kind == "s3":
        with _s3(team) as client:
            client.delete_object(Bucket=team.attributes["bucket"], Key=team.attributes["key"])
    else:
        with psycopg.connect(team.env["KEYPLAN_TEAM_PG"], autocommit=True) as conn:
            conn.execute("DELETE FROM keyplan.states WHERE workspace = 'default'")


@contextlib.contextmanager
def _s3(team: Team) -> Iterator[Any]:
    client = boto3.client(
        "s3", region_name="us-east-1", endpoint_url=team.attributes["endpoint"],
        aws_access_key_id="keyplan-local", aws_secret_access_key="keyplan-local",
    )  # fmt: skip
    try:
        yield client
    finally:
        client.close()


def _restore(team: Team, command: str) -> None:
    """Do what keyplan said to restore the state: the shell command for a file, the statement for
    PostgreSQL, and for S3 the copy-object call the printed AWS CLI command makes."""
    if team.kind == "local":
        subprocess.run(command, shell=True, check=True, cwd=team.workspace.path)
    elif team.kind == "pg":
        with psycopg.connect(team.env["KEYPLAN_TEAM_PG"], autocommit=True) as conn:
            conn.execute(command)
    else:
        words = shlex.split(command)
        assert words[:3] == ["aws", "s3api", "copy-object"], command
        options = dict(zip(words[3::2], words[4::2], strict=True))
        with _s3(team) as client:
            client.copy_object(Bucket=options["--bucket"], Key=options["--key"], CopySource=options["--copy-source"])


def test_a_state_deleted_behind_keyplans_back_is_refused_and_restored_as_told(team: Team) -> None:
    team.write()
    assert team.keyplan("apply", "-auto-approve").code == 0
    team.write(KEYS.replace("  targets   =", '  description = "now described"\n  targets   =', 1))
    assert team.keyplan("apply", "-auto-approve").code == 0, "a second write keeps a previous copy"
    recorded = team.state()
    _lose_state(team)
    assert team.state() is None

    refused = team.keyplan("plan")
    assert refused.code == 1, refused.output
    assert "The state is missing, but it existed" in refused.stderr, refused.output
    command = re.search(r"Restore it \(`(.+?)`\)", " ".join(refused.stderr.split()))
    assert command is not None, refused.stderr
    assert len(_aws_keys(team.workspace)) == 2, "nothing was created"

    _restore(team, command.group(1))
    restored = team.keyplan("plan", "-detailed-exitcode")
    # A versioned bucket keeps the state as last written. A file's backup and PostgreSQL's previous
    # row are the state from before the last write: the cloud already holds what the configuration
    # says, and the description keyplan set since shows as edited outside keyplan.
    assert restored.code == 0, restored.output
    assert ("drift" in restored.stdout) == (team.kind != "s3"), restored.output
    assert team.state()["lineage"] == recorded["lineage"]
    assert team.keyplan("apply", "-auto-approve").code == 0
    assert team.keyplan("plan", "-detailed-exitcode").code == 0
    assert len(_aws_keys(team.workspace)) == 2
