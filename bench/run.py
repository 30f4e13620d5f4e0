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
import time
from functools import partial
from pathlib import Path

from harness import REPO, Emulator, configuration, measure_sizes, results_table, run_size

EXPIRY = '  expiry {\n    after = "365d"\n  }\n'


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


def configure(emulator: Emulator, n: int, concurrency: int) -> str:
    settings = {"region": "eu-west-1", "endpoint": emulator.url, "credentials": "local", "max_concurrency": concurrency}
    return configuration("aws", settings, n, key_lines=EXPIRY)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS.md")
    args = parser.parse_args()
    naive = ("DescribeKey + ListResourceTags per key, serial", naive_refresh)
    start = partial(Emulator, "aws", latency_ms=args.latency_ms)
    rows = measure_sizes(args.sizes, "keyplan-bench-", lambda n, scratch: run_size(n, scratch, start, configure, naive))
    lines = [
        "# keyplan benchmark results",
        "",
        f"AWS KMS emulator in its own process, {args.latency_ms:g} ms injected latency per API call; "
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Wall time of whole `keyplan` processes (start-up included); calls counted by the emulator.",
        "",
        *results_table(rows),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
