"""Benchmark: plan and apply for N keys against the Google Cloud KMS emulator with injected
latency, keyplan's way against the naive way. Run by hand, never as a test.

For each size it:
1. starts the GCP emulator in its own process with --latency-ms (every API call sleeps that long),
2. runs `keyplan apply -auto-approve` (default parallelism) on a fresh configuration of N keys,
3. runs `keyplan plan` again (steady state, nothing to do),
4. does the steady-state refresh the naive way: one GetCryptoKey per key, one after the other,
   through the official client (what a shell loop over `gcloud kms keys describe` would do),
5. runs `keyplan apply -parallelism=1` on a second fresh emulator: the same apply, serially.

It reports wall time and API calls per operation, read from the emulator's /_emulator/stats, and
writes bench/RESULTS-gcp.md.

    .venv/bin/python bench/run_gcp.py [--sizes 100 1000] [--latency-ms 20]
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


def naive_refresh(emulator: Emulator, workdir: Path) -> float:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.kms_v1 import KeyManagementServiceClient

    state = json.loads((workdir / "keyplan.kpstate.json").read_text())
    client = KeyManagementServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=emulator.url),
    )
    started = time.perf_counter()
    for record in state["keys"].values():
        client.get_crypto_key(name=record["targets"]["gcp.bench"]["remote_id"])
    elapsed = time.perf_counter() - started
    client.transport.close()  # type: ignore[no-untyped-call]
    return elapsed


def configure(emulator: Emulator, n: int, concurrency: int) -> str:
    settings = {"project": "bench", "location": "global", "key_ring": "bench", "endpoint": emulator.url,
                "credentials": "local", "max_concurrency": concurrency}  # fmt: skip
    return configuration("gcp", settings, n)


def comparisons(rows: list[dict[str, object]]) -> list[str]:
    """Per size: calls per key, and keyplan's way against the naive way."""
    found: list[str] = []
    for n in sorted({int(str(row["n"])) for row in rows}):
        by_what = {str(row["what"]).split(":")[0].split(" (")[0]: row for row in rows if row["n"] == n}
        apply, plan = by_what["keyplan apply"], by_what["keyplan plan, nothing to do"]
        refresh, serial = by_what["naive refresh"], by_what["naive apply"]

        def calls(row: dict[str, object]) -> int:
            counted = row["calls"]
            assert isinstance(counted, dict)
            return sum(counted.values())

        def seconds(row: dict[str, object]) -> float:
            value = row["seconds"]
            assert isinstance(value, float)
            return value

        found.append(
            f"- {n} keys: apply makes {calls(apply) / n:.1f} API calls per key and runs "
            f"{seconds(serial) / seconds(apply):.1f}x faster than the serial apply; the steady-state plan makes "
            f"{calls(plan)} calls where the naive refresh makes {calls(refresh)} "
            f"({seconds(plan):.2f} s against {seconds(refresh):.2f} s, process start-up included in the former)."
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-gcp.md")
    parser.add_argument("--note", default="", help="a sentence about the run's conditions, added to the results")
    args = parser.parse_args()
    naive = ("GetCryptoKey per key, serial", naive_refresh)
    start = partial(Emulator, "gcp", latency_ms=args.latency_ms)
    rows = measure_sizes(
        args.sizes, "keyplan-bench-gcp-", lambda n, scratch: run_size(n, scratch, start, configure, naive)
    )
    lines = [
        "# keyplan benchmark results: Google Cloud KMS",
        "",
        f"Google Cloud KMS emulator in its own process, {args.latency_ms:g} ms injected latency per API call; "
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        "Wall time of whole `keyplan` processes (start-up included); calls counted by the emulator. "
        "Made by `bench/run_gcp.py`.",
        "",
        *results_table(rows),
    ]
    lines += ["", *comparisons(rows)]
    if args.note:
        lines += ["", args.note]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
