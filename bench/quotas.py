"""Benchmark: apply under the clouds' request quotas, keyplan's way against the naive way, and
wall time against the bound the quotas set. Run by hand, never as a test.

Each scenario starts a cloud's emulator in its own process with the `realistic` profile (the
cloud's documented default quotas enforced with its own throttling answer, multiplied by
`--quota-scale` when the scenario says so) and 20 ms of latency injected into every API call,
points a fresh configuration of N keys at it, and runs the real `keyplan apply -auto-approve`.
The provider block sets `rate_limits` to the emulator's (scaled) quotas: what keyplan does
against the cloud itself, where it paces every class at the documented rate from the first call.

The quota bound of an apply is, over every operation class, the calls the apply made in that
class divided by the class's rate; the largest is the bound (no client can finish sooner
without a burst the cloud grants). Calls are counted by the emulator (`/_emulator/stats`).

    .venv/bin/python bench/quotas.py [--only aws-100 ...] [--out bench/RESULTS-quotas.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import ENV, KEYPLAN, REPO, Emulator, Raw, configuration, run, summarise

sys.path.insert(0, str(REPO))

from keyplan.limits import RateClass  # noqa: E402

LATENCY_MS = 20.0
VAULT_URL = "https://bench.vault.azure.net"
PROVIDER_SETTINGS: dict[str, dict[str, object]] = {
    "aws": {"region": "eu-west-1"},
    "gcp": {"project": "bench", "location": "global", "key_ring": "bench"},
    "azure": {"vault_url": VAULT_URL},
}

@dataclass(frozen=True)
class Scenario:
    name: str
    cloud: str
    keys: int
    quota_scale: float = 1.0

    def emulator(self, data_dir: Path) -> Emulator:
        extra = ["--profile", "realistic", "--quota-scale", str(self.quota_scale)]
        if self.cloud == "azure":
            return Emulator("azure", data_dir, LATENCY_MS, *extra, "--kind", "vault", "--vault-url", VAULT_URL, tls=True)
        return Emulator(self.cloud, data_dir, LATENCY_MS, *extra)

    def classes(self) -> tuple[RateClass, ...]:
        """The emulator's quota classes, scaled as it enforces them."""
        if self.cloud == "aws":
            from providers.aws.quotas import RATE_CLASSES as aws

            classes = aws
        elif self.cloud == "gcp":
            from providers.gcp.quotas import RATE_CLASSES as gcp

            classes = gcp
        else:
            from providers.azure.quotas import VAULT_CLASSES

            classes = VAULT_CLASSES
        return tuple(c.model_copy(update={"per_second": c.per_second * self.quota_scale}) for c in classes)

    def configuration(self, emulator: Emulator) -> str:
        rates = Raw("{ " + ", ".join(f"{c.name} = {c.per_second:g}" for c in self.classes()) + " }")
        settings = {**PROVIDER_SETTINGS[self.cloud], "endpoint": emulator.url, "credentials": "local"}
        if self.cloud == "azure":  # RSA signing keys: Key Vault (not a Managed HSM) holds no AES keys
            settings["ca_bundle"] = str(emulator.ca)
            return configuration("azure", settings | {"rate_limits": rates}, self.keys, algorithm="RSA_2048",
                                 key_lines='  usage     = "sign"\n', width=5)  # fmt: skip
        return configuration(self.cloud, settings | {"rate_limits": rates}, self.keys, width=5)


SCENARIOS = (
    Scenario("aws-100", "aws", 100),
    Scenario("aws-1000", "aws", 1000, quota_scale=10),
    Scenario("gcp-100", "gcp", 100, quota_scale=10),
    Scenario("azure-50", "azure", 50),
)


def quota_bound(
    quotas: dict[str, dict[str, object]], calls: dict[str, int], spent: dict[str, float] | None = None
) -> tuple[float, str]:
    """Seconds the emulator's quotas (`/_emulator/stats`: rate and operations per class) need for
    these calls at the least, and the class that sets it. Where the emulator reports the units
    its admitted calls spent (a cloud weighing its calls, like Key Vault), those count."""
    per_class: dict[str, float] = {}
    for name, quota in quotas.items():
        operations = list(quota["operations"])  # type: ignore[call-overload]
        count = spent[name] if spent and name in spent else sum(calls.get(str(op), 0) for op in operations)
        if count:
            per_class[name] = count / float(quota["per_second"])  # type: ignore[arg-type]
    name = max(per_class, key=lambda n: per_class[n])
    return per_class[name], name


def peak_memory_run(workdir: Path, *args: str) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Wall seconds and peak resident memory (bytes) of one keyplan run."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    seconds, result = run(workdir, *args)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise SystemExit("run the plan measurement first: peak memory is per process tree")
    return seconds, peak * 1024, result


def errors_shown(output: str) -> int:
    return sum(1 for line in output.splitlines() if line.lstrip().startswith(("Error", "error", "╷ Error")))


def run_scenario(scenario: Scenario, root: Path) -> dict[str, object]:
    emulator = scenario.emulator(root / f"emu-{scenario.name}")
    try:
        workdir = root / scenario.name
        workdir.mkdir()
        (workdir / "main.kp.hcl").write_text(scenario.configuration(emulator))
        emulator.reset()
        seconds, result = run(workdir, "apply", "-auto-approve")
        if result.returncode != 0:
            print(result.stdout[-1500:] + result.stderr[-1500:], file=sys.stderr)
        stats = emulator.control("/_emulator/stats")
        materials = emulator.control("/_emulator/materials")["materials"]
    finally:
        emulator.stop()
    calls = {str(op): int(n) for op, n in dict(stats["calls"]).items()}  # type: ignore[call-overload]
    throttled = {str(c): int(n) for c, n in dict(stats.get("throttled", {})).items() if n}  # type: ignore[call-overload]
    quotas = dict(stats["quotas"])  # type: ignore[call-overload]
    accepted = dict(calls)
    for name, quota in quotas.items():  # a throttled call is counted among the calls, not the work
        for operation in quota["operations"]:
            if operation in accepted and throttled.get(name):
                accepted[operation] -= throttled[name]
                break
    spent = {str(c): float(u) for c, u in dict(stats.get("spent", {})).items()}  # type: ignore[call-overload]
    bound, bounding = quota_bound(quotas, accepted, spent)
    imported_keys = [str(m["key"]) for m in materials]  # type: ignore[index]
    imported = len(set(imported_keys))
    return {
        "scenario": scenario.name,
        "keys": scenario.keys,
        "quota_scale": scenario.quota_scale,
        "seconds": seconds,
        "bound": bound,
        "bounding": bounding,
        "ratio": seconds / bound,
        "imported": imported,
        "errors": errors_shown(result.stdout + result.stderr),
        "exit": result.returncode,
        "duplicates": len(imported_keys) - imported,
        "throttled": throttled,
        "calls": calls,
    }


def naive_aws_imports(url: str, n: int) -> tuple[float, int, int]:
    """The serial boto3 script a user would write for the same imports: per key CreateKey (tags
    included), GetParametersForImport, wrap, ImportKeyMaterial, one after the other, with
    boto3's default retries. Returns wall seconds, keys imported and errors raised."""
    import boto3
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    kms = boto3.client(
        "kms", region_name="eu-west-1", endpoint_url=url, aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    imported = errors = 0
    started = time.perf_counter()
    for i in range(n):
        try:
            key = kms.create_key(
                Origin="EXTERNAL",
                KeySpec="SYMMETRIC_DEFAULT",
                KeyUsage="ENCRYPT_DECRYPT",
                Tags=[{"TagKey": "app", "TagValue": f"key-{i:05d}"}, {"TagKey": "env", "TagValue": "bench"}],
            )["KeyMetadata"]
            params = kms.get_parameters_for_import(
                KeyId=key["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_4096"
            )
            public_key = serialization.load_der_public_key(params["PublicKey"])
            oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
            wrapped = public_key.encrypt(os.urandom(32), oaep)  # type: ignore[union-attr, call-arg]
            kms.import_key_material(
                KeyId=key["KeyId"],
                ImportToken=params["ImportToken"],
                EncryptedKeyMaterial=wrapped,
                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
            )
            imported += 1
        except Exception:  # noqa: BLE001 - the naive script counts its failures and goes on
            errors += 1
    return time.perf_counter() - started, imported, errors


def naive_under_quotas(root: Path, n: int) -> dict[str, object]:
    """The serial boto3 script against the realistic profile (AWS's quotas, 20 ms)."""
    scenario = Scenario(f"naive-aws-{n}", "aws", n)
    emulator = scenario.emulator(root / f"emu-naive-{n}")
    try:
        emulator.reset()
        seconds, imported, errors = naive_aws_imports(emulator.url, n)
        stats = emulator.control("/_emulator/stats")
    finally:
        emulator.stop()
    throttled = {str(c): int(v) for c, v in dict(stats.get("throttled", {})).items() if v}  # type: ignore[call-overload]
    return {"scenario": scenario.name, "keys": n, "seconds": seconds, "imported": imported, "errors": errors,
            "throttled": throttled, "bound": n / 5}  # fmt: skip


def no_quota_comparison(root: Path, n: int) -> dict[str, object]:
    """No quotas, 20 ms per call: keyplan apply against the serial boto3 script, each on
    its own fresh emulator, one after the other in the same run."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"free-{n}-", dir=root))
    first = Emulator("aws", run_dir / "emu-keyplan", LATENCY_MS)
    try:
        workdir = run_dir / "keyplan"
        workdir.mkdir()
        settings = {**PROVIDER_SETTINGS["aws"], "endpoint": first.url, "credentials": "local"}
        (workdir / "main.kp.hcl").write_text(configuration("aws", settings, n, width=5))
        first.reset()
        before, emulator_before = os.times(), process_cpu(first.process.pid)
        keyplan_seconds, result = run(workdir, "apply", "-auto-approve")
        after = os.times()
        emulator_cpu = process_cpu(first.process.pid) - emulator_before
        calls = first.calls()
        imported = len({m["key"] for m in first.control("/_emulator/materials")["materials"]})  # type: ignore[index,union-attr]
    finally:
        first.stop()
    second = Emulator("aws", run_dir / "emu-naive", LATENCY_MS)
    try:
        naive_cpu = time.process_time()
        naive_seconds, naive_imported, naive_errors = naive_aws_imports(second.url, n)
        naive_cpu = time.process_time() - naive_cpu
    finally:
        second.stop()
    return {"keys": n, "keyplan_seconds": keyplan_seconds, "keyplan_exit": result.returncode, "imported": imported,
            "keyplan_user": after.children_user - before.children_user,
            "keyplan_system": after.children_system - before.children_system, "emulator_cpu": emulator_cpu,
            "calls": calls, "naive_seconds": naive_seconds, "naive_cpu": naive_cpu, "naive_imported": naive_imported,
            "naive_errors": naive_errors, "speedup": naive_seconds / keyplan_seconds}  # fmt: skip


def process_cpu(pid: int) -> float:
    """User plus system CPU seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def big_plan(root: Path, n: int) -> dict[str, object]:
    """`plan -refresh=false` of n keys in blocks of 1,000 (range() stops at 1,024 elements)."""
    workdir = root / f"plan-{n}"
    workdir.mkdir()
    blocks = [
        f"""key "b{b:03d}" {{
  for_each  = toset([for i in range({min(1000, n - b * 1000)}) : format("key-%05d", i)])
  algorithm = "AES_256"
  source    = source.software.bench
  targets   = [provider.aws.bench]
  labels    = {{ app = each.key, env = "bench" }}
}}
"""
        for b in range((n + 999) // 1000)
    ]
    header = 'source "software" "bench" {}\n\nprovider "aws" "bench" {\n  region = "eu-west-1"\n}\n\n'
    (workdir / "main.kp.hcl").write_text(header + "\n".join(blocks))
    seconds, peak, result = peak_memory_run(workdir, "plan", "-refresh=false")
    if result.returncode != 0:
        raise SystemExit(result.stdout[-2000:] + result.stderr[-2000:])
    return {"keys": n, "seconds": seconds, "peak_mib": peak / 2**20, "last_lines": result.stdout.strip().splitlines()[-2:]}


def markdown(results: dict[str, list[dict[str, object]]]) -> str:
    lines = ["# keyplan under request quotas: benchmark results", ""]
    lines.append(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.1f} when written. Each emulator in its own process, {LATENCY_MS:g} ms injected per API "
        "call; wall time of whole `keyplan` processes (start-up and planning included)."
    )
    if results.get("quotas"):
        lines += ["", "## Apply under the realistic profile", "",
                  "| scenario | keys | quotas | wall (s) | quota bound (s) | wall ÷ bound | keys imported | errors shown | "
                  "throttled calls | calls |", "|---|---:|---|---:|---:|---:|---:|---:|---|---|"]  # fmt: skip
        for r in results["quotas"]:
            scale = "documented" if r["quota_scale"] == 1 else f"documented × {r['quota_scale']:g}"
            lines.append(
                f"| {r['scenario']} | {r['keys']} | {scale} | {r['seconds']:.1f} | {r['bound']:.1f} ({r['bounding']}) | "
                f"{r['ratio']:.2f} | {r['imported']} | {r['errors']} | {sum(dict(r['throttled']).values())} | "  # type: ignore[call-overload]
                f"{summarise(dict(r['calls']))} |"  # type: ignore[call-overload]
            )
    if results.get("naive"):
        lines += ["", "## The naive serial boto3 script under the same quotas", "",
                  "| keys | wall (s) | quota bound (s) | keys imported | errors raised | throttled calls |",
                  "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in results["naive"]:
            lines.append(
                f"| {r['keys']} | {r['seconds']:.1f} | {r['bound']:.1f} | {r['imported']} | {r['errors']} | "
                f"{sum(dict(r['throttled']).values())} |"  # type: ignore[call-overload]
            )
    if results.get("noquota"):
        lines += ["", "## No quotas, 20 ms per call", "",
                  "| keys | keyplan apply (s) | keyplan CPU user + system (s) | emulator CPU (s) | serial boto3 script (s) | "
                  "script CPU (s) | keyplan faster by | calls per key (keyplan) |",
                  "|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in results["noquota"]:
            calls = dict(r["calls"])  # type: ignore[call-overload]
            per_key = ", ".join(f"{op} {count / int(r['keys']):.2f}" for op, count in sorted(calls.items()))
            lines.append(
                f"| {r['keys']} | {r['keyplan_seconds']:.1f} | {r['keyplan_user']:.1f} + {r['keyplan_system']:.1f} | "
                f"{r['emulator_cpu']:.1f} | {r['naive_seconds']:.1f} | {r['naive_cpu']:.1f} | {r['speedup']:.2f}× | "
                f"{per_key} |"
            )
        speedups = sorted(float(r["speedup"]) for r in results["noquota"])  # type: ignore[arg-type]
        if len(speedups) > 1:
            lines += ["", f"{len(speedups)} runs: keyplan faster by {speedups[0]:.2f}× to {speedups[-1]:.2f}×, median "
                      f"{statistics.median(speedups):.2f}×."]  # fmt: skip
    if results.get("plan"):
        lines += ["", "## Planning (`plan -refresh=false`)", "", "| keys | wall (s) | peak memory (MiB) |",
                  "|---:|---:|---:|"]  # fmt: skip
        for r in results["plan"]:
            lines.append(f"| {r['keys']:,} | {r['seconds']:.1f} | {r['peak_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sections", nargs="*", default=["plan", "quotas", "naive", "noquota"])
    parser.add_argument("--only", nargs="*", help="quota scenario names")
    parser.add_argument("--plan-keys", type=int, nargs="*", default=[100_000])
    parser.add_argument("--noquota-keys", type=int, default=500)
    parser.add_argument("--noquota-runs", type=int, default=1, help="no-quota comparisons, one after the other")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "RESULTS-quotas.md")
    args = parser.parse_args(list(argv) if argv is not None else None)
    results: dict[str, list[dict[str, object]]] = {}
    subprocess.run([str(KEYPLAN), "version"], env=ENV, capture_output=True, check=True)  # bytecode cached
    with tempfile.TemporaryDirectory(prefix="keyplan-bench-quotas-") as scratch:
        root = Path(scratch)
        if "plan" in args.sections:  # first: peak memory is measured over this process's children
            for n in args.plan_keys:
                results.setdefault("plan", []).append(row := big_plan(root, n))
                print(f"plan {n:>7} keys  {row['seconds']:7.1f}s  peak {row['peak_mib']:.0f} MiB", flush=True)
        if "quotas" in args.sections:
            for scenario in SCENARIOS:
                if args.only and scenario.name not in args.only:
                    continue
                results.setdefault("quotas", []).append(row := run_scenario(scenario, root))
                print(
                    f"{row['scenario']:>10}  {row['seconds']:7.2f}s  bound {row['bound']:6.2f}s ({row['bounding']})  "
                    f"ratio {row['ratio']:.2f}  imported {row['imported']}  errors {row['errors']}  exit {row['exit']}  "
                    f"throttled {row['throttled']}  calls: {summarise(row['calls'])}",  # type: ignore[arg-type]
                    flush=True,
                )
        if "naive" in args.sections:
            results.setdefault("naive", []).append(row := naive_under_quotas(root, 100))
            print(f"naive under quotas: {row}", flush=True)
        if "noquota" in args.sections:
            for _ in range(args.noquota_runs):
                results.setdefault("noquota", []).append(row := no_quota_comparison(root, args.noquota_keys))
                print(f"no quota: {row}", flush=True)
    args.out.write_text(markdown(results))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
