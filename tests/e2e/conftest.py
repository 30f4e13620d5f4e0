"""Driving the real `keyplan` CLI in-process (fast) or as a subprocess (for kill tests), and
reaching the embedded emulators out of band through the real SDKs."""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import boto3
import pytest

from keyplan.cli.main import main
from providers.aws import KmsEmulator
from providers.emulation.server import EmulatorServer, fetch_json, start_embedded

REPO = Path(__file__).resolve().parents[2]
KEYPLAN_BIN = REPO / ".venv" / "bin" / "keyplan"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_keyplan(workdir: Path, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> Result:
    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    saved_stdin = sys.stdin
    os.environ.update(env or {})
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["-chdir", str(workdir), *args])
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.stdin = saved_stdin
    return Result(code, out.getvalue(), err.getvalue())


@dataclass
class Workspace:
    path: Path

    def write(self, text: str, name: str = "main.kp.hcl") -> None:
        (self.path / name).write_text(text)

    def keyplan(self, *args: str, **kwargs: Any) -> Result:
        return run_keyplan(self.path, *args, **kwargs)

    @property
    def state_path(self) -> Path:
        return self.path / "keyplan.kpstate.json"

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())

    @contextlib.contextmanager
    def aws(self, name: str = "aws-main") -> Iterator[tuple[Any, EmulatorServer]]:
        """The embedded AWS emulator's data, served again for out-of-band changes through boto3."""
        server = start_embedded(KmsEmulator, self.path / ".keyplan", name)
        try:
            client = boto3.client(
                "kms",
                region_name="eu-west-1",
                endpoint_url=server.url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            yield client, server
        finally:
            server.stop()
            server.app.store.close()

    def emulator_fingerprints(self, name: str = "aws-main") -> dict[str, list[str]]:
        with self.aws(name) as (_, server):
            materials = fetch_json(server.url + "/_emulator/materials")["materials"]
        found: dict[str, list[str]] = {}
        for m in materials:
            if m.get("imported", True):
                found.setdefault(m["key"], []).append(m["fingerprint"])
        return found


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def secret_forms(secret: bytes) -> list[bytes]:
    """Every way a leaked secret could be written: raw, hex, base64, base64url, and a base64 prefix
    (enough to count as a leak)."""
    return [
        secret,
        secret.hex().encode(),
        secret.hex().upper().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
        base64.b64encode(secret)[:24],
    ]


def lifecycle_commands(planfile: Path, rotate: str, show: str) -> list[tuple[str, ...]]:
    """The commands a leak scan runs: validate, plans in every format, a saved plan applied, a
    rotation, state views, drift, the proofs of possession and the graph."""
    return [
        ("validate",),
        ("plan", "-json"),
        ("plan", f"-out={planfile}"),
        ("show", str(planfile), "-json"),
        ("show", str(planfile), "-markdown"),
        ("apply", str(planfile)),
        ("plan", "-json", "-replace", rotate),
        ("apply", "-auto-approve", "-replace", rotate),
        ("show",),
        ("show", "-json"),
        ("state", "show", show),
        ("drift", "-json"),
        ("verify",),
        ("verify", "-json"),
        ("drift", "-verify", "-json"),
        ("graph",),
    ]


# -- the same small configuration on each cloud's embedded emulator (two AES keys) ------------

_SMALL_KEYS = """
variable "team" {
  type    = string
  default = "core"
}

source "software" "local" {}

key "app" {
  for_each  = toset(["a", "b"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.%s]
  labels    = { team = var.team }
}
"""

CLOUD_CONFIGS = {
    "aws": _SMALL_KEYS % "aws.main"
    + """
provider "aws" "main" {
  region   = "eu-west-1"
  endpoint = "embedded"
  # the embedded emulator (without its realistic profile) lists a new key at once
  consistency_window_seconds = 0
}
""",
    "gcp": _SMALL_KEYS % "gcp.main"
    + """
provider "gcp" "main" {
  project  = "p"
  location = "global"
  key_ring = "ring"
  endpoint = "embedded"
}
""",
    "azure": _SMALL_KEYS % "azure.hsm"
    + """
provider "azure" "hsm" {
  endpoint  = "embedded"
  vault_url = "https://payments.managedhsm.azure.net"
}
""",
}


def emulator_counts(workdir: Path) -> dict[str, int]:
    """How many documents of each kind (keys, versions, aliases, import jobs ...) the workspace's
    embedded emulators hold, read from their stores: what a refused command must leave as it was."""
    import sqlite3

    counts: dict[str, int] = {}
    for database in sorted((workdir / ".keyplan" / "emulators").glob("*.sqlite")):
        with contextlib.closing(sqlite3.connect(database)) as db:
            for collection, count in db.execute("SELECT coll, count(*) FROM docs GROUP BY coll"):
                counts[collection] = counts.get(collection, 0) + count
    return counts


# -- `keyplan` as a process of its own, forked from this one ---------------------------------------


class ForkedKeyplan:
    """`keyplan` run as a process of its own, as `subprocess.Popen` runs the installed command
    (and with the same methods), but forked from this test process instead of started afresh:
    its own pid, OS locks, signal handlers and memory, its standard input, output and error on
    pipes, killable at any moment; without a new interpreter's start-up (about 0.7 s of CPU each
    to import keyplan and the SDKs again). What a fresh interpreter proves (the installed command
    starts, imports what it needs) the CI-script and emulator-command tests still prove.

    `env` is the whole environment of the process, as for Popen; `answers` gives it a standard
    input to write to (else it reads an empty one); `stderr_apart` keeps standard error on its
    own pipe (else it is merged into standard output); `memory_cap` bounds how much address space
    it may map beyond what it starts with."""

    def __init__(
        self, workdir: Path, *args: str, env: dict[str, str] | None = None, answers: bool = False,
        stderr_apart: bool = False, memory_cap: int | None = None,
    ) -> None:  # fmt: skip
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe() if stderr_apart else (-1, out_write)
        in_read, in_write = os.pipe() if answers else (os.open(os.devnull, os.O_RDONLY), -1)
        handle, self._imports = tempfile.mkstemp(prefix="keyplan-fork-imports-")
        os.close(handle)
        self.pid = os.fork()
        if self.pid == 0:  # the child: run keyplan, never return into pytest
            self._run_child(workdir, args, env, (in_read, out_write, err_write), memory_cap, self._imports)
        for end in {in_read, out_write, err_write}:
            os.close(end)
        self.stdout = open(out_read, encoding="utf-8")  # noqa: SIM115 - kept open, as Popen's
        self.stderr = open(err_read, encoding="utf-8") if stderr_apart else None  # noqa: SIM115
        self.stdin = open(in_write, "w", encoding="utf-8") if answers else None  # noqa: SIM115
        self.returncode: int | None = None
        self._read: dict[str, list[str]] = {}
        self._readers: list[threading.Thread] = []

    @staticmethod
    def _run_child(
        workdir: Path, args: tuple[str, ...], env: dict[str, str] | None, fds: tuple[int, int, int],
        memory_cap: int | None, imports: str,
    ) -> NoReturn:  # fmt: skip
        code = 1
        loaded = set(sys.modules)
        try:
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            # Popen's close_fds: no pipe of this process's (the other forks' ends) is held open
            # here, so that each of them sees its end of file when the test closes its end
            for name in os.listdir("/proc/self/fd"):
                with contextlib.suppress(OSError):
                    if int(name) > 2 and stat.S_ISFIFO(os.fstat(int(name)).st_mode):
                        os.close(int(name))
            if memory_cap is not None:  # beyond the address space the fork starts with (the test process's)
                mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
                resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_cap, mapped + memory_cap))
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
                signal.signal(number, signal.SIG_DFL if number != signal.SIGPIPE else signal.SIG_IGN)
            if env is not None:
                os.environ.clear()
                os.environ.update(env)
            forget_what_earlier_runs_cached()
            # the standard streams of a Python process whose streams are pipes
            sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", 1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
            try:
                main(["-chdir", str(workdir), *args])
                code = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
            for thread in threading.enumerate():  # an interpreter's exit waits for its threads
                if thread is not threading.current_thread() and not thread.daemon:
                    thread.join()
        except KeyboardInterrupt:  # escaped keyplan: the interpreter ends itself with the signal
            traceback.print_exc()
            _flush_standard_streams()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
        finally:
            _flush_standard_streams()
            with contextlib.suppress(Exception):
                Path(imports).write_text("\n".join(name for name in list(sys.modules) if name not in loaded))
            os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                self._import_what_it_imported()
        return self.returncode

    def _import_what_it_imported(self) -> None:
        """Import here the modules the fork imported (its command's, the providers', the SDKs'):
        the next forks of this process start with them, as the keyplan runs of the in-process
        tests do, instead of each importing them again (about 0.4 s of CPU)."""
        names = Path(self._imports).read_text().split()
        os.unlink(self._imports)
        for name in names:
            if name not in sys.modules:
                with contextlib.suppress(Exception):
                    importlib.import_module(name)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"keyplan (pid {self.pid})", timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def communicate(self, input: str | None = None, timeout: float | None = None) -> tuple[str, str | None]:  # noqa: A002
        """What the process printed from now on until it ended (standard output, standard error
        when apart), `input` written to its standard input first; TimeoutExpired if it outlives
        `timeout` (then call again, e.g. after kill)."""
        if not self._readers:
            if self.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    if input:
                        self.stdin.write(input)
                    self.stdin.close()
            for name, stream in (("stdout", self.stdout), ("stderr", self.stderr)):
                if stream is not None:
                    self._read[name] = []
                    reader = threading.Thread(target=lambda s=stream, n=name: self._read[n].append(s.read()), daemon=True)
                    reader.start()
                    self._readers.append(reader)
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(f"keyplan (pid {self.pid})", timeout or 0)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        return "".join(self._read["stdout"]), "".join(self._read["stderr"]) if self.stderr is not None else None


def forget_what_earlier_runs_cached() -> None:
    """In a fork, what an SDK keeps for the whole process and a new keyplan process starts
    without: Key Vault's clients remember each server's authentication challenge by host and port,
    and an embedded emulator can listen on a port one of this process's earlier runs used. A fork
    that found it there would skip the challenge call: one call fewer than a recorded apply (the
    crash suite's count), and no challenge as a real first run makes."""
    cache = sys.modules.get("azure.keyvault.keys._shared.http_challenge_cache")
    if cache is not None:
        cache.clear()


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def keyplan_in_fork(
    workdir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180, memory_cap: int | None = None
) -> Result:
    """`keyplan ARGS` run to its end as a process of its own (ForkedKeyplan), as `subprocess.run`
    with `capture_output` and `timeout` runs the installed command: one that does not end within
    `timeout` is killed and fails the test instead of hanging it."""
    process = ForkedKeyplan(workdir, *args, env=env, stderr_apart=True, memory_cap=memory_cap)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    return Result(process.wait(), out, err or "")


# -- killing an apply at an exact remote call, and resuming it -----------------------------------

EMULATOR_NAMES = {"aws": "aws-main", "gcp": "gcp-main", "azure": "azure-hsm"}


def apply_killed_at(workspace: Workspace, cloud: str, call: int, when: str) -> bool:
    """`keyplan apply` (one step at a time) in a forked copy of this process, SIGKILLed by its
    embedded emulator at its `call`-th API call, `before` the work or `after` it (the answer
    never sent). The fork keeps the test process's loaded modules and RSA key pool, so each kill
    costs an apply, not a process start. True when it was killed; False when it finished first
    (it made fewer calls)."""
    faults = {EMULATOR_NAMES[cloud]: {"crash": {"at": call, "when": when}}}
    pid = os.fork()
    if pid == 0:  # the child: run keyplan, never return into pytest
        code = 1
        try:
            forget_what_earlier_runs_cached()
            code = run_keyplan(
                workspace.path, "apply", "-auto-approve", "-parallelism", "1",
                env={"KEYPLAN_EMULATOR_FAULTS": json.dumps(faults)},
            ).code
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL, status
        return True
    assert os.WEXITSTATUS(status) == 0, f"the apply failed instead of being killed (exit {os.WEXITSTATUS(status)})"
    return False


def resume_after_kill(workspace: Workspace) -> Result:
    """The next apply after a kill, as a user runs it: no force-unlock, no -lock-timeout (the
    local lock is an OS lock that died with the killed process). It runs in a forked copy of this
    process, like the killed apply, so that what it loads and caches stays out of the process
    the next case forks from."""
    return in_fork(lambda: workspace.keyplan("apply", "-auto-approve"))


T = TypeVar("T")


def in_fork(work: Callable[[], T]) -> T:
    """`work()` run in a forked copy of this process, its (picklable) result sent back: the
    copy's module-level caches die with it, so every fork starts from the same process."""
    import pickle
    import tempfile

    with tempfile.NamedTemporaryFile(prefix="keyplan-fork-") as answer:
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                forget_what_earlier_runs_cached()
                with open(answer.name, "wb") as out:
                    pickle.dump(work(), out)
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"the forked run ended with status {status}"
        with open(answer.name, "rb") as result:
            loaded: T = pickle.load(result)
        return loaded


def assert_each_key_once(workspace: Workspace, cloud: str) -> None:
    """The cloud holds exactly the keys state records (no duplicate, no orphan), each key holds
    exactly one imported version (an import whose answer a crash lost is found, not made again as
    a second version where the cloud adds versions), and that version holds the material state
    recorded for the key."""
    from collections import Counter
    from urllib.parse import urlsplit

    from providers.azure.emulator import emulator_class
    from providers.emulation.clock import Clock
    from providers.emulation.store import DocumentStore
    from providers.gcp.emulator import GcpKmsEmulator

    app_class, collection = {
        "aws": (KmsEmulator, "keys"),
        "gcp": (GcpKmsEmulator, "cryptoKeys"),
        "azure": (emulator_class("managedhsm"), "keys"),
    }[cloud]
    state = workspace.state()
    recorded = {
        target["remote_id"]: record["materials"][-1]["fingerprint"]
        for record in state["keys"].values()
        for target in record["targets"].values()
    }
    if cloud == "azure":  # the vault names keys; keyplan records https://<vault>/keys/<name>
        recorded = {urlsplit(rid).path.split("/")[2].lower(): fp for rid, fp in recorded.items()}
    store = DocumentStore(workspace.path / ".keyplan" / "emulators" / f"{EMULATOR_NAMES[cloud]}.sqlite")
    try:
        app = app_class(store, Clock())
        keys = [doc_id for doc_id, _ in store.list(collection) if not doc_id.endswith("keyplan-kek")]
        held = [
            (m["key"].lower() if cloud == "azure" else m["key"].split("/cryptoKeyVersions/")[0], m["fingerprint"])
            for m in app.material_fingerprints()
            if m.get("imported", True)
        ]
    finally:
        store.close()
    assert len(keys) == len(recorded) == 2, f"{cloud} holds {keys}, state records {sorted(recorded)}"
    versions = Counter(key for key, _ in held)
    assert set(versions) == set(recorded), f"every key holds material: {held}"
    assert all(count == 1 for count in versions.values()), f"a material imported twice: {held}"
    assert all(recorded[key] == fingerprint for key, fingerprint in held), f"only the material state recorded: {held}"
