"""Benchmark: planning at scale. Run by hand, never as a test.

Two measurements, each of a whole `keyplan` process (start-up included), with its wall time and
its own peak resident memory (the child's `ru_maxrss`):

- `plan -refresh=false` of N AES-256 keys declared in blocks of 1,000 (for_each over range(),
  which stops at 1,024 elements) with one AWS target: configuration, diff, action graph and the
  text plan, no cloud read.
- the steady state: N keys applied once to the AWS emulator (no quotas, no injected latency),
  then `keyplan plan` with its refresh against the emulator's listing: every key in state and
  in the cloud, nothing to do. The emulator counts the calls the plan made.

    .venv/bin/python bench/plan_scale.py [--plan-keys 10000 100000] [--steady-keys 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from harness import KEYPLAN, Emulator, summarise

ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
    "KEYPLAN_KEYSTORE_PASSPHRASE": "bench-passphrase",
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "keyplan-bench-pycache"),
}

BLOCK = """key "b{b:03d}" {{
  for_each  = toset([for i in range({count}) : format("key-%05d", i)])
  algorithm = "AES_256"
  source    = source.software.bench
  targets   = [provider.aws.bench]
  labels    = {{ app = each.key, env = "bench" }}
}}
"""


def configuration(n: int, provider: str) -> str:
    blocks = [BLOCK.format(b=b, count=min(1000, n - b * 1000)) for b in range((n + 999) // 1000)]
    return f'source "software" "bench" {{}}\n\nprovider "aws" "bench" {{\n{provider}}}\n\n' + "\n".join(blocks)


def run(workdir: Path, *args: str) -> tuple[float, float, str]:
    """Wall seconds, peak resident MiB and output of one keyplan process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(KEYPLAN), "-chdir", str(workdir), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, text=True
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode not in (0, 2):
        raise SystemExit(f"keyplan {' '.join(args)} failed:\n{output[-3000:]}")
    return seconds, usage.ru_maxrss / 1024, output


def plan_without_refresh(root: Path, n: int) -> dict[str, object]:
    workdir = root / f"plan-{n}"
    workdir.mkdir()
    (workdir / "main.kp.hcl").write_text(configuration(n, '  region = "eu-west-1"\n'))
    seconds, peak, output = run(workdir, "plan", "-refresh=false")
    return {"keys": n, "seconds": seconds, "peak_mib": peak, "summary": output.strip().splitlines()[-2]}


def steady_state(root: Path, n: int, repeat: int) -> list[dict[str, object]]:
    emulator = Emulator("aws", root / f"emu-steady-{n}", 0.0)
    try:
        workdir = root / f"steady-{n}"
        workdir.mkdir()
        provider = f'  region      = "eu-west-1"\n  endpoint    = "{emulator.url}"\n  credentials = "local"\n'
        (workdir / "main.kp.hcl").write_text(configuration(n, provider))
        apply_seconds, _, _ = run(workdir, "apply", "-auto-approve")
        rows: list[dict[str, object]] = []
        for _ in range(repeat):
            emulator.reset()
            load = os.getloadavg()[0]
            seconds, peak, output = run(workdir, "plan", "-detailed-exitcode")
            rows.append({"keys": n, "apply_seconds": apply_seconds, "seconds": seconds, "peak_mib": peak, "load": load,
                         "calls": emulator.calls(), "summary": output.strip().splitlines()[-1]})  # fmt: skip
    finally:
        emulator.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plan-keys", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--steady-keys", type=int, nargs="*", default=[10_000])
    parser.add_argument("--steady-plans", type=int, default=3, help="steady-state plans after the one apply")
    args = parser.parse_args()
    subprocess.run([str(KEYPLAN), "version"], env=ENV, capture_output=True, check=True)  # bytecode cached
    print(f"load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="keyplan-bench-plan-") as scratch:
        root = Path(scratch)
        for n in args.plan_keys:
            r = plan_without_refresh(root, n)
            print(f"plan -refresh=false  {n:>7,} keys: {r['seconds']:6.1f} s, {r['peak_mib']:6.0f} MiB peak | {r['summary']}")
        for n in args.steady_keys:
            for r in steady_state(root, n, args.steady_plans):
                print(
                    f"steady-state plan    {n:>7,} keys: {r['seconds']:6.1f} s, {r['peak_mib']:6.0f} MiB peak, load "
                    f"{r['load']:.1f}, calls {summarise(dict(r['calls']))} (apply took {r['apply_seconds']:.0f} s) | "  # type: ignore[call-overload]
                    f"{r['summary']}"
                )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
