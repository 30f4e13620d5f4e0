"""What the benchmark scripts share: a cloud emulator in its own process, a benchmark
configuration, a timed `keyplan` run, the apply / steady-state plan / naive refresh / serial apply
sequence of one size, and the calls-per-operation summary."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
KEYPLAN = REPO / ".venv" / "bin" / "keyplan"


class Emulator:
    """`python -m providers.<kind>.emulator` on a free port with injected latency, its long-lived
    resources (wrapping keys) made before it serves, as a cloud has them: otherwise whichever run
    calls it first waits for an RSA-4096 key generation. The first line it prints is its URL; a
    TLS emulator prints `ca-cert: <path>` next."""

    def __init__(self, kind: str, data_dir: Path, latency_ms: float, *extra: str, tls: bool = False) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [str(PYTHON), "-m", f"providers.{kind}.emulator", "--port", "0", "--data-dir", str(data_dir),
             "--latency-ms", str(latency_ms), "--prepare", *extra],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )  # fmt: skip
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        self.ca = Path(self.process.stdout.readline().strip().removeprefix("ca-cert: ")) if tls else None
        self._tls = ssl.create_default_context(cafile=str(self.ca)) if self.ca else None

    def control(self, path: str, method: str = "GET") -> dict[str, object]:
        request = urllib.request.Request(self.url + path, method=method, data=b"{}" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=30, context=self._tls) as response:
            return dict(json.loads(response.read()))

    def reset(self) -> None:
        self.control("/_emulator/stats/reset", "POST")

    def calls(self) -> dict[str, int]:
        calls = self.control("/_emulator/stats")["calls"]
        assert isinstance(calls, dict)
        return {str(operation): int(count) for operation, count in calls.items()}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# keyplan as installed runs from cached bytecode; a checkout may have bytecode writing turned off
# (PYTHONDONTWRITEBYTECODE), which would add the compilation of every module to each run.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
    "KEYPLAN_KEYSTORE_PASSPHRASE": "bench-passphrase",
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "keyplan-bench-pycache"),
}


def configuration(
    provider: str,
    settings: dict[str, object],
    n: int,
    *,
    algorithm: str = "AES_256",
    key_lines: str = "",
    width: int = 4,
) -> str:
    """The software keystore and `n` keys of one `for_each` block on one provider block. Strings
    in `settings` are quoted; anything else (numbers, an HCL object as `Raw`) is written as is."""
    provider_lines = "".join(
        f"  {name} = {value if isinstance(value, Raw) or not isinstance(value, str) else json.dumps(value)}\n"
        for name, value in settings.items()
    )
    return (
        'source "software" "bench" {}\n\n'
        f'provider "{provider}" "bench" {{\n{provider_lines}}}\n\n'
        'key "k" {\n'
        f'  for_each  = toset([for i in range({n}) : format("key-%0{width}d", i)])\n'
        f'  algorithm = "{algorithm}"\n'
        f"{key_lines}"
        "  source    = source.software.bench\n"
        f"  targets   = [provider.{provider}.bench]\n"
        "  labels    = { app = each.key, env = \"bench\" }\n"
        "}\n"
    )


class Raw(str):
    """An HCL expression written into a configuration unquoted."""


def run(workdir: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run the real CLI as a subprocess: its wall time in seconds and what it printed."""
    started = time.perf_counter()
    result = subprocess.run(
        [str(KEYPLAN), "-chdir", str(workdir), *args], capture_output=True, text=True, check=False, env=ENV
    )
    return time.perf_counter() - started, result


def keyplan(workdir: Path, *args: str) -> float:
    """Run the real CLI as a subprocess; returns its wall time in seconds (exit 0 or 2, else stop)."""
    elapsed, result = run(workdir, *args)
    if result.returncode not in (0, 2):
        sys.stderr.write(result.stdout[-3000:] + result.stderr[-3000:])
        raise SystemExit(f"keyplan {' '.join(args)} failed with {result.returncode}")
    return elapsed


def run_size(
    n: int,
    root: Path,
    start: Callable[[Path], Emulator],
    configure: Callable[[Emulator, int, int], str],
    naive: tuple[str, Callable[[Emulator, Path], float]],
    *,
    concurrency: int = 16,
    serial: bool = True,
) -> list[dict[str, object]]:
    """One size, each row its wall time and the calls the emulator counted: keyplan apply of `n`
    new keys, the steady-state plan, the naive refresh (`naive`: what it does, and how), and on a
    second fresh emulator the same apply one call at a time. `configure(emulator, n, concurrency)`
    writes the configuration; `start(data_dir)` starts an emulator."""
    rows: list[dict[str, object]] = []

    def workspace(name: str, emulator: Emulator, per_provider: int) -> Path:
        workdir = root / name
        workdir.mkdir()
        (workdir / "main.kp.hcl").write_text(configure(emulator, n, per_provider))
        return workdir

    def row(what: str, emulator: Emulator, measure: Callable[[], float]) -> None:
        emulator.reset()
        seconds = measure()
        rows.append({"n": n, "what": what, "seconds": seconds, "calls": emulator.calls()})

    emulator = start(root / f"emu-{n}")
    try:
        workdir = workspace(f"keyplan-{n}", emulator, concurrency)
        row(f"keyplan apply (default parallelism, {concurrency} per provider)", emulator,
            lambda: keyplan(workdir, "apply", "-auto-approve"))
        row("keyplan plan, nothing to do", emulator, lambda: keyplan(workdir, "plan", "-detailed-exitcode"))
        row(f"naive refresh: {naive[0]}", emulator, lambda: naive[1](emulator, workdir))
    finally:
        emulator.stop()
    if serial:
        second = start(root / f"emu-serial-{n}")
        try:
            serial_dir = workspace(f"serial-{n}", second, 1)
            row("naive apply: the same apply, one call at a time (-parallelism=1)", second,
                lambda: keyplan(serial_dir, "apply", "-auto-approve", "-parallelism=1"))
        finally:
            second.stop()
    return rows  # fmt: skip


def summarise(calls: dict[str, int]) -> str:
    return ", ".join(f"{op} {count}" for op, count in sorted(calls.items())) or "none"


def measure_sizes(
    sizes: list[int], prefix: str, measure: Callable[[int, Path], list[dict[str, object]]]
) -> list[dict[str, object]]:
    """`measure(n, scratch)` for each size in a scratch directory, each row printed as it comes."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        for n in sizes:
            for row in measure(n, Path(scratch)):
                rows.append(row)
                print(f"{row['n']:>5} keys  {row['seconds']:8.2f}s  {row['what']}", flush=True)
    return rows


def results_table(rows: list[dict[str, object]]) -> list[str]:
    """The Markdown table of `run_size` rows: wall time and calls per operation."""
    lines = ["| keys | run | wall time (s) | API calls | calls per operation |", "|---:|---|---:|---:|---|"]
    for row in rows:
        calls = row["calls"]
        assert isinstance(calls, dict)
        lines.append(
            f"| {row['n']} | {row['what']} | {row['seconds']:.2f} | {sum(calls.values())} | {summarise(calls)} |"
        )
    return lines
