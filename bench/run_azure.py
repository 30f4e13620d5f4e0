"""Benchmark: plan and apply for N keys against the Azure Managed HSM emulator with injected
latency, keyplan's way against the naive way. Run by hand, never as a test.

For each size it:
1. starts the emulator (a Managed HSM, HTTPS) in its own process with --latency-ms (every API
   call sleeps that long),
2. runs `keyplan apply -auto-approve` (default parallelism, 16 calls per provider) on a fresh
   configuration of N AES-256 keys,
3. runs `keyplan plan` again (steady state, nothing to do),
4. does the steady-state refresh the naive way: one get_key per key, one after the other,
   through azure-keyvault-keys (what a shell loop over `az keyvault key show` would do),
5. runs `keyplan apply -parallelism=1` with one call per provider on a second fresh emulator:
   the same apply, serially.

It reports wall time and API calls per operation, read from the emulator's /_emulator/stats
("Challenge" is the bearer-token challenge each new connection answers first), and writes
bench/RESULTS-azure.md.

    .venv/bin/python bench/run_azure.py [--sizes 100 1000] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from harness import REPO, Emulator, configuration, measure_sizes, results_table, run_size

VAULT_URL = "https://bench.managedhsm.azure.net"
EXPIRY = "  expiry {\n    after = \"365d\"\n  }\n"

def naive_refresh(emulator: Emulator, workdir: Path) -> float:
    from azure.keyvault.keys import KeyClient

    from providers.azure.client import LocalTokenCredential

    state = json.loads((workdir / "keyplan.kpstate.json").read_text())
    client = KeyClient(
        vault_url=emulator.url,
        credential=LocalTokenCredential(),
        verify_challenge_resource=False,
        connection_verify=str(emulator.ca),
    )
    started = time.perf_counter()
    with client:
        for record in state["keys"].values():
            name = record["targets"]["azure.bench"]["remote_id"].rsplit("/", 1)[1]
            client.get_key(name)
    return time.perf_counter() - started


def configure(emulator: Emulator, n: int, concurrency: int) -> str:
    settings = {"vault_url": VAULT_URL, "endpoint": emulator.url, "credentials": "local", "ca_bundle": str(emulator.ca),
                "max_concurrency": concurrency}  # fmt: skip
    return configuration("azure", settings, n, key_lines=EXPIRY)


def start(latency_ms: float) -> Callable[[Path], Emulator]:
    return lambda data_dir: Emulator(
        "azure", data_dir, latency_ms, "--kind", "managedhsm", "--vault-url", VAULT_URL, tls=True
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--no-serial-above", type=int, default=1000, help="Skip the serial apply above this size.")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-azure.md")
    args = parser.parse_args()
    naive = ("get_key per key, serial", naive_refresh)
    rows = measure_sizes(
        args.sizes,
        "keyplan-bench-azure-",
        lambda n, scratch: run_size(
            n, scratch, start(args.latency_ms), configure, naive, serial=n <= args.no_serial_above
        ),
    )
    lines = [
        "# keyplan benchmark results: Azure",
        "",
        (
            f"Azure emulator (a Managed HSM over HTTPS) in its own process, {args.latency_ms:g} ms injected latency "
            f"per API call; AES-256 keys from the software keystore; machine: {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}. Wall time of whole `keyplan` processes "
            "(start-up included); calls counted by the emulator (`Challenge` is the bearer challenge a new "
            "connection answers first)."
        ),
        "",
        *results_table(rows),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
