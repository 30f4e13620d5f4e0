"""What a `keyplan` process costs from start to exit: CPU (user + system) and wall time of real
commands against the quickstart example (a software keystore, AWS KMS through the embedded
emulator, or through the same emulator served by `keyplan emulator aws` over HTTP, as the test
suite's processes reach it), each run as its own process, keyplan's way beside the naive way.

keyplan's way: the installed `keyplan` command, which imports only what the command it runs
needs (the command's own module; the configuration language, the planner and networkx, the
approvals, the policy engine, a cloud's SDK only once a command reaches them). The naive way:
the same `main()` after importing every module of keyplan and of the installed plugins first, as
a command line that imports everything at the top would. `--before REV` adds a row for keyplan
as it was at the git revision REV (its `keyplan/` and `providers/` extracted to a temporary
directory and put first on the import path), to compare a change with what it replaced.

    .venv/bin/python bench/startup.py [--runs 10] [--before REV]

Bytecode is cached (as on an installed system) before anything is timed. Read the median on a
busy machine, and the load average printed with the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
KEYPLAN = REPO / ".venv" / "bin" / "keyplan"

# name -> (the copy of the quickstart it runs in, its arguments)
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "version": ("embedded", ("-version",)),
    "help": ("embedded", ("-help",)),
    "validate": ("embedded", ("validate",)),
    "plan": ("embedded", ("plan", "-no-color")),
    "apply": ("embedded", ("apply", "-auto-approve", "-no-color")),
    "plan over HTTP": ("http", ("plan", "-no-color")),
    "apply over HTTP": ("http", ("apply", "-auto-approve", "-no-color")),
}

# Every module of keyplan and of the installed plugins imported before main(): a command line
# that imports everything at the top. The conformance suites (keyplan.testing, needing pytest) and
# the plugins' test helpers are not part of any command, and a `__main__` would run.
NAIVE = """
import importlib, pkgutil, sys
import keyplan, providers
for package in (keyplan, providers):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if ".testing" not in module.name and not module.name.endswith((".tests", ".__main__")):
            try:
                importlib.import_module(module.name)
            except ImportError:  # an optional SDK not installed
                pass
from keyplan.cli.main import main
sys.argv[0] = "keyplan"
main()
"""


@dataclass
class Timing:
    cpu: list[float]
    wall: list[float]


def run_once(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """One process: its CPU seconds (user + system, from the kernel's accounting) and wall seconds."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode() if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited with {process.returncode}:\n{errors}")
    return usage.ru_utime + usage.ru_stime, wall


def quickstart(directory: Path) -> Path:
    """A copy of examples/quickstart, applied once, so plan and apply have nothing to change."""
    workdir = directory / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", workdir)
    subprocess.run([str(KEYPLAN), "apply", "-auto-approve"], cwd=workdir, check=True, capture_output=True)
    return workdir


def served_copy(applied: Path, directory: Path) -> tuple[Path, subprocess.Popen[str]]:
    """A copy of the applied quickstart whose AWS provider reaches its emulator data over HTTP,
    served by `keyplan emulator aws` in its own process."""
    workdir = directory / "quickstart-http"
    shutil.copytree(applied, workdir)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    emulator = subprocess.Popen(
        [str(KEYPLAN), "emulator", "aws", "--port", str(port), "--name", "main"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    url = emulator.stdout.readline().strip() if emulator.stdout else ""
    if not url.startswith("http://"):
        emulator.kill()
        raise SystemExit(f"keyplan emulator aws did not start (it printed {url!r})")
    config = workdir / "main.kp.hcl"
    text = config.read_text().replace('endpoint = "embedded"', f'endpoint = "{url}"\n  credentials = "local"')
    config.write_text(text)
    return workdir, emulator


def extract(revision: str, directory: Path) -> Path:
    """keyplan's and the plugins' sources at `revision`, to be put first on the import path."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision, "keyplan", "providers"],
        check=True,
        capture_output=True,
    ).stdout
    target = directory / f"keyplan-{revision}"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="processes per command and way (default 10)")
    parser.add_argument("--before", metavar="REV", help="add a row for keyplan at this git revision")
    parser.add_argument("--commands", nargs="*", choices=list(COMMANDS), default=list(COMMANDS))
    options = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    env["NO_COLOR"] = "1"
    with tempfile.TemporaryDirectory(prefix="keyplan-startup-") as temporary:
        directory = Path(temporary)
        workdirs = {"embedded": quickstart(directory)}
        workdirs["http"], emulator = served_copy(workdirs["embedded"], directory)
        ways: dict[str, tuple[list[str], dict[str, str]]] = {
            "keyplan": ([str(KEYPLAN)], env),
            "naive (every module imported first)": ([str(PYTHON), "-c", NAIVE], env),
        }
        if options.before:
            source = extract(options.before, directory)
            ways[f"keyplan at {options.before}"] = ([str(KEYPLAN)], dict(env, PYTHONPATH=str(source)))
        timings: dict[tuple[str, str], Timing] = {}
        try:
            for command in options.commands:
                where, args = COMMANDS[command]
                for way, (prefix, way_env) in ways.items():
                    run_once([*prefix, *args], workdirs[where], way_env)  # writes the bytecode caches; not counted
                    timings[command, way] = Timing(cpu=[], wall=[])
                # the ways take turns, so a change in the machine's load weighs on each alike
                for _ in range(options.runs):
                    for way, (prefix, way_env) in ways.items():
                        cpu, wall = run_once([*prefix, *args], workdirs[where], way_env)
                        timings[command, way].cpu.append(cpu)
                        timings[command, way].wall.append(wall)
                for way in ways:
                    median = statistics.median(timings[command, way].cpu)
                    print(f"  {command:<20} {way:<40} cpu {median:.3f} s", file=sys.stderr)
        finally:
            emulator.terminate()
            emulator.wait()

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n{options.runs} runs each; load average {load}; {os.cpu_count()} CPUs; Python {sys.version.split()[0]}\n")
    print("| command | way | CPU median (s) | CPU min (s) | wall median (s) |")
    print("|---|---|---:|---:|---:|")
    for (command, way), timing in timings.items():
        print(
            f"| `keyplan {' '.join(COMMANDS[command][1])}`{' (HTTP)' if COMMANDS[command][0] == 'http' else ''} "
            f"| {way} | {statistics.median(timing.cpu):.3f} "
            f"| {min(timing.cpu):.3f} | {statistics.median(timing.wall):.3f} |"
        )


if __name__ == "__main__":
    main()
