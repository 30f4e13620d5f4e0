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
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import KEYPLAN, REPO, Emulator, summarise

sys.path.insert(0, str(REPO))

from keyplan.limits import RateClass  # noqa: E402

LATENCY_MS = 20.0
VAULT_URL = "https://bench.vault.azure.net"

AWS = """
source "software" "bench" {{}}

provider "aws" "bench" {{
  region      = "eu-west-1"
  endpoint    = "{url}"
  credentials = "local"
  rate_limits = {rates}
}}

key "k" {{
  for_each  = toset([for i in range({n}) : format("key-%05d", i)])
  algorithm = "AES_256"
  source    = source.software.bench
  targets   = [provider.aws.bench]
  labels    = {{ app = each.key, env = "bench" }}
}}
"""

GCP = """
source "software" "bench" {{}}

provider "gcp" "bench" {{
  project     = "bench"
  location    = "global"
  key_ring    = "bench"
  endpoint    = "{url}"
  credentials = "local"
  rate_limits = {rates}
}}

key "k" {{
  for_each  = toset([for i in range({n}) : format("key-%05d", i)])
  algorithm = "AES_256"
  source    = source.software.bench
  targets   = [provider.gcp.bench]
  labels    = {{ app = each.key, env = "bench" }}
}}
"""

AZURE = """
source "software" "bench" {{}}

provider "azure" "bench" {{
  vault_url   = "{vault_url}"
  endpoint    = "{url}"
  credentials = "local"
  ca_bundle   = "{ca}"
  rate_limits = {rates}
}}

key "k" {{
  for_each  = toset([for i in range({n}) : format("key-%05d", i)])
  algorithm = "RSA_2048"
  usage     = "sign_verify"
  source    = source.software.bench
  targets   = [provider.azure.bench]
  labels    = {{ app = each.key, env = "bench" }}
}}
"""


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
        rates = "{ " + ", ".join(f"{c.name} = {c.per_second:g}" for c in self.classes()) + " }"
        template = {"aws": AWS, "gcp": GCP, "azure": AZURE}[self.cloud]
        return template.format(url=emulator.url, n=self.keys, rates=rates, vault_url=VAULT_URL, ca=emulator.ca)


SCENARIOS = (
    Scenario("aws-50", "aws", 50),
    Scenario("aws-100", "aws", 100),
    Scenario("aws-1000", "aws", 1000, quota_scale=10),
    Scenario("gcp-100", "gcp", 100, quota_scale=10),
    Scenario("azure-50", "azure", 50),
)


def class_of(scenario: Scenario, operation: str) -> RateClass | None:
    return next((c for c in scenario.classes() if operation in c.operations), None)


def quota_bound(scenario: Scenario, calls: dict[str, int]) -> tuple[float, str]:
    """Seconds the quotas need for these calls at the least, and the class that sets it."""
    per_class: dict[str, float] = {}
    for operation, count in calls.items():
        rate_class = class_of(scenario, operation)
        if rate_class is not None:
            per_class[rate_class.name] = per_class.get(rate_class.name, 0.0) + count / rate_class.per_second
    name = max(per_class, key=lambda n: per_class[n])
    return per_class[name], name


def run_keyplan(workdir: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = subprocess.run(
        [str(KEYPLAN), "-chdir", str(workdir), *args],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ, KEYPLAN_KEYSTORE_PASSPHRASE="bench-passphrase"),
    )
    return time.perf_counter() - started, result


def errors_shown(output: str) -> int:
    return sum(1 for line in output.splitlines() if line.lstrip().startswith(("Error", "error", "╷ Error")))


def run_scenario(scenario: Scenario, root: Path) -> dict[str, object]:
    emulator = scenario.emulator(root / f"emu-{scenario.name}")
    try:
        workdir = root / scenario.name
        workdir.mkdir()
        (workdir / "main.kp.hcl").write_text(scenario.configuration(emulator))
        emulator.reset()
        seconds, result = run_keyplan(workdir, "apply", "-auto-approve")
        stats = emulator.control("/_emulator/stats")
        materials = emulator.control("/_emulator/materials")["materials"]
    finally:
        emulator.stop()
    calls = {str(op): int(n) for op, n in dict(stats["calls"]).items()}  # type: ignore[call-overload]
    throttled = {str(c): int(n) for c, n in dict(stats.get("throttled", {})).items() if n}  # type: ignore[call-overload]
    accepted = dict(calls)
    for rate_class in scenario.classes():  # a throttled call is counted among the calls, not the work
        for operation in rate_class.operations:
            if operation in accepted and throttled.get(rate_class.name):
                accepted[operation] -= throttled[rate_class.name]
                break
    bound, bounding = quota_bound(scenario, accepted)
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


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", help="scenario names")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(list(argv) if argv is not None else None)
    rows = []
    with tempfile.TemporaryDirectory(prefix="keyplan-bench-quotas-") as scratch:
        for scenario in SCENARIOS:
            if args.only and scenario.name not in args.only:
                continue
            row = run_scenario(scenario, Path(scratch))
            rows.append(row)
            print(
                f"{row['scenario']:>10}  {row['seconds']:7.2f}s  bound {row['bound']:6.2f}s ({row['bounding']})  "
                f"ratio {row['ratio']:.2f}  imported {row['imported']}  errors {row['errors']}  exit {row['exit']}  "
                f"throttled {row['throttled']}  calls: {summarise(row['calls'])}",  # type: ignore[arg-type]
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps({"machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
