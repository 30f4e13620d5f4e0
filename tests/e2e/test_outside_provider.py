"""A provider from outside keyplan, written as docs/adding-a-provider.md says: installed beside
keyplan (a distribution with a `keyplan.providers` entry point), it is found by the CLI, applies
keys through its own emulator, and passes the conformance suite keyplan ships. Nothing in
keyplan names it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import KEYPLAN_BIN, REPO, Result

FIXTURE = REPO / "tests" / "fixtures" / "outside_provider"

CONFIG = """
source "software" "local" {}

provider "vault" "main" {
  endpoint = "embedded"
}

key "data" {
  for_each  = toset(["a", "b"])
  algorithm = "AES_256"
  source    = source.software.local
  targets   = [provider.vault.main]
  labels    = { team = "payments" }
}
"""


def installed(site: Path) -> dict[str, str]:
    """An environment in which the fixture is an installed distribution, as pip would leave it."""
    info = site / "keyplan_vault-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: keyplan-vault\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text('[keyplan.providers]\nvault = keyplan_vault:PLUGIN\n')
    env = {k: v for k, v in os.environ.items() if k not in ("KEYPLAN_EMULATOR_FAULTS", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(FIXTURE)])
    return env


def run(workdir: Path, env: dict[str, str], *args: str) -> Result:
    done = subprocess.run(
        [str(KEYPLAN_BIN), "-chdir", str(workdir), *args], env=env, capture_output=True, text=True, timeout=180
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_an_installed_outside_provider_is_found_and_applies_keys(tmp_path: Path) -> None:
    env = installed(tmp_path / "site")
    work = tmp_path / "work"
    work.mkdir()
    (work / "main.kp.hcl").write_text(CONFIG)
    assert run(work, env, "validate").code == 0
    applied = run(work, env, "apply", "-auto-approve")
    assert applied.code == 0, applied.output
    assert "Traceback" not in applied.output
    assert run(work, env, "plan", "-detailed-exitcode").code == 0

    served = subprocess.Popen(
        [str(KEYPLAN_BIN), "-chdir", str(work), "emulator", "vault"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert served.stdout is not None
        url = served.stdout.readline().strip()
        held = subprocess.run(
            [sys.executable, "-c", f"import urllib.request; print(urllib.request.urlopen('{url}/_emulator/materials').read().decode())"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
    finally:
        served.terminate()
        served.wait(timeout=30)
    state = json.loads((work / "keyplan.kpstate.json").read_text())["keys"]
    recorded = {(r["targets"]["vault.main"]["remote_id"], r["materials"][0]["fingerprint"]) for r in state.values()}
    assert {(m["key"], m["fingerprint"]) for m in json.loads(held)["materials"]} == recorded


def test_the_shipped_conformance_suite_passes_from_outside(tmp_path: Path) -> None:
    env = installed(tmp_path / "site")
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", str(FIXTURE / "conformance_check.py"), "-q", "-p", "no:cacheprovider",
         "-p", "no:xdist", "--rootdir", str(FIXTURE), "-c", os.devnull],
        env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert " passed" in suite.stdout and "failed" not in suite.stdout
