"""Benchmark: plan and apply for N keys against the AWS KMS emulator with injected latency,
keyplan's way against the naive way. Run by hand (`make bench`), never as a test.

For each size it:
1. starts the emulator in its own process with --latency-ms (every API call sleeps that long),
2. runs `keyplan apply -auto-approve` (default parallelism) on a fresh configuration of N keys,
3. runs `keyplan plan` again (steady state, nothing to do),
4. does the steady-state refresh the naive way: one DescribeKey + one ListResourceTags per key,
   one after the other, through boto3 (what a shell loop over the CLI would do),
5. runs `keyplan apply -parallelism=1` on a second fresh emulator: the same apply, serially.

It reports wall time and API calls per operation, read from the emulator's /_emulator/stats, and
writes bench/RESULTS.md.

    .venv/bin/python bench/run.py [--sizes 100 1000] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from harness import REPO, Emulator, keyplan, summarise

CONFIG = """
source "software" "bench" {{}}

provider "aws" "bench" {{
  region          = "eu-west-1"
  endpoint        = "{url}"
  credentials     = "local"
  max_concurrency = {concurrency}
}}

key "k" {{
  for_each  = toset([for i in range({n}) : format("key-%04d", i)])
  algorithm = "AES_256"
  source    = source.software.bench
  targets   = [provider.aws.bench]
  labels    = {{ app = each.key, env = "bench" }}
  expiry {{
    after = "365d"
  }}
}}
"""


def naive_refresh(emulator: Emulator, workdir: Path) -> float:
    import boto3

    state = json.loads((workdir / "keyplan.kpstate.json").read_text())
    kms = boto3.client(
        "kms", region_name="eu-west-1", endpoint_url=emulator.url,
        aws_access_key_id="bench", aws_secret_access_key="bench",
    )
    started = time.perf_counter()
    for record in state["keys"].values():
        arn = record["targets"]["aws.bench"]["remote_id"]
        kms.describe_key(KeyId=arn)
        kms.list_resource_tags(KeyId=arn)
    return time.perf_counter() - started


def workspace(root: Path, name: str, url: str, n: int, concurrency: int) -> Path:
    workdir = root / name
    workdir.mkdir()
    (workdir / "main.kp.hcl").write_text(CONFIG.format(url=url, n=n, concurrency=concurrency))
    return workdir


def run_size(n: int, latency_ms: float, root: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    emulator = Emulator("aws", root / f"emu-{n}", latency_ms)
    try:
        workdir = workspace(root, f"keyplan-{n}", emulator.url, n, 16)
        emulator.reset()
        rows.append({"n": n, "what": "keyplan apply (parallelism 10, 16 per provider)",
                     "seconds": keyplan(workdir, "apply", "-auto-approve"), "calls": emulator.calls()})
        emulator.reset()
        rows.append({"n": n, "what": "keyplan plan, nothing to do",
                     "seconds": keyplan(workdir, "plan", "-detailed-exitcode"), "calls": emulator.calls()})
        emulator.reset()
        rows.append({"n": n, "what": "naive refresh: DescribeKey + ListResourceTags per key, serial",
                     "seconds": naive_refresh(emulator, workdir), "calls": emulator.calls()})
    finally:
        emulator.stop()
    serial = Emulator("aws", root / f"emu-serial-{n}", latency_ms)
    try:
        workdir = workspace(root, f"serial-{n}", serial.url, n, 1)
        serial.reset()
        rows.append({"n": n, "what": "naive apply: the same apply, one call at a time (-parallelism=1)",
                     "seconds": keyplan(workdir, "apply", "-auto-approve", "-parallelism=1"), "calls": serial.calls()})
    finally:
        serial.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="keyplan-bench-") as scratch:
        for n in args.sizes:
            for row in run_size(n, args.latency_ms, Path(scratch)):
                rows.append(row)
                print(f"{row['n']:>5} keys  {row['seconds']:8.2f}s  {row['what']}", flush=True)
    lines = [
        "# keyplan benchmark results",
        "",
        f"AWS KMS emulator in its own process, {args.latency_ms:g} ms injected latency per API call; "
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Wall time of whole `keyplan` processes (start-up included); calls counted by the emulator.",
        "",
        "| keys | run | wall time (s) | API calls | calls per operation |",
        "|---:|---|---:|---:|---|",
    ]
    for row in rows:
        calls = row["calls"]
        assert isinstance(calls, dict)
        lines.append(
            f"| {row['n']} | {row['what']} | {row['seconds']:.2f} | {sum(calls.values())} | {summarise(calls)} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
