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
import tempfile
import time
from pathlib import Path

from harness import REPO, Emulator, keyplan, summarise

VAULT_URL = "https://bench.managedhsm.azure.net"

CONFIG = """
source "software" "bench" {{}}

provider "azure" "bench" {{
  vault_url       = "{vault_url}"
  endpoint        = "{url}"
  credentials     = "local"
  ca_bundle       = "{ca}"
  max_concurrency = {concurrency}
}}

key "k" {{
  for_each  = toset([for i in range({n}) : format("key-%04d", i)])
  algorithm = "AES_256"
  source    = source.software.bench
  targets   = [provider.azure.bench]
  labels    = {{ app = each.key, env = "bench" }}
  expiry {{
    after = "365d"
  }}
}}
"""


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


def workspace(root: Path, name: str, emulator: Emulator, n: int, concurrency: int) -> Path:
    workdir = root / name
    workdir.mkdir()
    text = CONFIG.format(vault_url=VAULT_URL, url=emulator.url, ca=emulator.ca, n=n, concurrency=concurrency)
    (workdir / "main.kp.hcl").write_text(text)
    return workdir


def run_size(n: int, latency_ms: float, root: Path, serial: bool) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    emulator = Emulator("azure", root / f"emu-{n}", latency_ms, "--kind", "managedhsm", "--vault-url", VAULT_URL, tls=True)
    try:
        workdir = workspace(root, f"keyplan-{n}", emulator, n, 16)
        emulator.reset()
        rows.append({"n": n, "what": "keyplan apply (parallelism 10, 16 per provider)",
                     "seconds": keyplan(workdir, "apply", "-auto-approve"), "calls": emulator.calls()})
        emulator.reset()
        rows.append({"n": n, "what": "keyplan plan, nothing to do",
                     "seconds": keyplan(workdir, "plan", "-detailed-exitcode"), "calls": emulator.calls()})
        emulator.reset()
        rows.append({"n": n, "what": "naive refresh: get_key per key, serial",
                     "seconds": naive_refresh(emulator, workdir), "calls": emulator.calls()})
    finally:
        emulator.stop()
    if serial:
        second = Emulator("azure", root / f"emu-serial-{n}", latency_ms, "--kind", "managedhsm", "--vault-url", VAULT_URL, tls=True)
        try:
            workdir = workspace(root, f"serial-{n}", second, n, 1)
            second.reset()
            rows.append({"n": n, "what": "naive apply: the same apply, one call at a time (-parallelism=1)",
                         "seconds": keyplan(workdir, "apply", "-auto-approve", "-parallelism=1"),
                         "calls": second.calls()})
        finally:
            second.stop()
    return rows  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--no-serial-above", type=int, default=1000, help="Skip the serial apply above this size.")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-azure.md")
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="keyplan-bench-azure-") as scratch:
        for n in args.sizes:
            for row in run_size(n, args.latency_ms, Path(scratch), serial=n <= args.no_serial_above):
                rows.append(row)
                print(f"{row['n']:>5} keys  {row['seconds']:8.2f}s  {row['what']}", flush=True)
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
