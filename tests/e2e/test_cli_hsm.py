"""End to end through the CLI with a real SoftHSM2 token in a temporary directory: `keyplan hsm
init-dev`, material generated and wrapped inside the token and imported into the embedded AWS,
Google Cloud and Azure Managed HSM emulators, the security officer's trust step, and every way
the token can fail, each a diagnostic with exit code 1.

What the emulators unwrapped is the proof: each one's fingerprint (`GET /_emulator/materials`)
equals the check value the token computed. The material cannot be read from the token (that is
the point), so the leak scan takes it from the emulators' stores.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import stat
from collections.abc import Iterator
from typing import Any

import pytest
from pkcs11 import Attribute

from keyplan.algorithms import MaterialKind
from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from providers.aws import KmsEmulator
from providers.azure.emulator import emulator_class
from providers.emulation import EmulatorApp, start_embedded
from providers.emulation.server import fetch_json
from providers.emulation.store import DocumentStore
from providers.gcp.emulator import GcpKmsEmulator
from providers.pkcs11 import find_softhsm_module
from providers.pkcs11.library import attach, detach, find_token, login, logout
from tests.e2e.conftest import Result, Workspace, run_keyplan, secret_forms

pytestmark = pytest.mark.hsm

PIN = "482915"
SO_PIN = "73920164"
PINS = {"KEYPLAN_HSM_PIN": PIN, "KEYPLAN_HSM_SO_PIN": SO_PIN}

SOURCE = """
source "pkcs11" "hsm" {{
  module      = "{module}"
  token_label = "{label}"
  pin_env     = "KEYPLAN_HSM_PIN"
  module_env  = {{ SOFTHSM2_CONF = "./.keyplan/softhsm/softhsm2.conf" }}
  {extra}
}}
"""

PROVIDERS = """
provider "aws" "main" {
  region            = "eu-west-1"
  endpoint          = "embedded"
  wrapping_key_spec = "RSA_3072" # the size is irrelevant here; 3072 generates faster
}

provider "gcp" "main" {
  project  = "keyplan-e2e"
  location = "europe-west1"
  key_ring = "hsm"
  endpoint = "embedded"
}

provider "azure" "hsm" {
  vault_url = "https://keyplan-e2e.managedhsm.azure.net"
  endpoint  = "embedded"
}
"""

KEY = """
key "{name}" {{
  algorithm = "{algorithm}"
  source    = source.pkcs11.hsm
  targets   = [{targets}]
  labels    = {{ app = "{name}" }}
}}
"""

EVERY_TARGET = "provider.aws.main, provider.gcp.main, provider.azure.hsm"
EMULATORS: dict[str, tuple[str, type[EmulatorApp]]] = {
    "aws.main": ("aws-main", KmsEmulator),
    "gcp.main": ("gcp-main", GcpKmsEmulator),
    "azure.hsm": ("azure-hsm", emulator_class("managedhsm")),
}


def config(
    *,
    keys: tuple[tuple[str, str, str], ...] = (("data", "AES_256", EVERY_TARGET),),
    module: str | None = None,
    label: str = "keyplan",
    extra: str = "",
) -> str:
    text = SOURCE.format(module=module or find_softhsm_module(), label=label, extra=extra) + PROVIDERS
    for name, algorithm, targets in keys:
        text += KEY.format(name=name, algorithm=algorithm, targets=targets)
    return text


def init_token(workspace: Workspace, *args: str, env: dict[str, str] | None = None) -> Result:
    result = workspace.keyplan("hsm", "init-dev", *args, env=PINS if env is None else env)
    assert result.code == 0, result.output
    return result


def assert_diagnostic(result: Result, summary: str) -> None:
    assert result.code == 1, result.output
    assert "Traceback" not in result.output and "crashed" not in result.output
    assert f"Error: {summary}" in result.stderr, result.stderr


def emulator_fingerprints(workspace: Workspace, target: str) -> dict[str, list[str]]:
    """remote key (as the emulator names it) -> fingerprints of what it unwrapped."""
    name, app = EMULATORS[target]
    server = start_embedded(app, workspace.path / ".keyplan", name)
    try:
        materials = fetch_json(server.url + "/_emulator/materials", ca=getattr(server, "ca_cert", None))["materials"]
    finally:
        server.stop()
        server.app.store.close()
    held: dict[str, list[str]] = {}
    for material in materials:
        if material.get("imported", True):
            held.setdefault(material["key"], []).append(material["fingerprint"])
    return held


def held_for(held: dict[str, list[str]], remote_id: str) -> list[str]:
    """The fingerprints an emulator holds for a remote id: AWS and Google Cloud name the key as
    keyplan records it; Azure by name, which ends keyplan's key URL."""
    return [fp for key, fps in held.items() for fp in fps if remote_id == key or remote_id.endswith("/keys/" + key)]


@contextlib.contextmanager
def token_session(workspace: Workspace, pin: str = PIN, label: str = "keyplan") -> Iterator[Any]:
    """A user session on the workspace's token through keyplan's library registry."""
    conf = workspace.path / ".keyplan" / "softhsm" / "softhsm2.conf"
    library = attach(find_softhsm_module(), {"SOFTHSM2_CONF": str(conf)})
    token = find_token(library, label, None)
    try:
        with library.lock:
            yield login(library, token, pin)
    finally:
        logout(library, token)
        detach(library)


# ---- the main scenario: one applied workspace, every assertion about it -----------------------


def unwrapped_materials(workspace: Workspace) -> dict[str, list[bytes]]:
    """What each emulator unwrapped, from its store (the token never reveals it)."""
    emulators = workspace.path / ".keyplan" / "emulators"
    found: dict[str, list[bytes]] = {}
    store = DocumentStore(emulators / "aws-main.sqlite")
    try:
        found["aws.main"] = [
            base64.b64decode(m["secret"]) for _, key in store.list("keys") for m in key["materials"] if m.get("secret")
        ]
    finally:
        store.close()
    store = DocumentStore(emulators / "gcp-main.sqlite")
    try:
        found["gcp.main"] = [
            base64.b64decode(doc["_material"]) for _, doc in store.list("cryptoKeyVersions") if doc.get("_material")
        ]
    finally:
        store.close()
    store = DocumentStore(emulators / "azure-hsm.sqlite")
    try:
        found["azure.hsm"] = [
            base64.b64decode(doc["private"]) for _, doc in store.list("versions") if doc.get("imported")
        ]
    finally:
        store.close()
    return found



def test_token_material_reaches_every_cloud_and_nothing_leaks(workspace: Workspace) -> None:
    created = workspace.keyplan(
        "hsm", "init-dev", "--pin-file", ".keyplan/softhsm/pins.env", env={"KEYPLAN_LOG": "DEBUG"}
    )
    assert created.code == 0, created.output
    pins_file = workspace.path / ".keyplan" / "softhsm" / "pins.env"
    assert stat.S_IMODE(pins_file.stat().st_mode) == 0o600
    pins = dict(re.findall(r"^export (\w+)='([^']+)'$", pins_file.read_text(), re.MULTILINE))
    assert (
        set(pins) == {"KEYPLAN_HSM_PIN", "KEYPLAN_HSM_SO_PIN"} and pins["KEYPLAN_HSM_PIN"] != pins["KEYPLAN_HSM_SO_PIN"]
    )
    # The printed block is the source block to paste: it works as printed.
    block = created.stdout[created.stdout.index('source "pkcs11" "hsm" {') : created.stdout.index("\n}\n") + 3]
    assert f'module      = "{find_softhsm_module()}"' in block and 'token_label = "keyplan"' in block
    assert 'pin_env     = "KEYPLAN_HSM_PIN"' in block
    assert 'SOFTHSM2_CONF = "./.keyplan/softhsm/softhsm2.conf"' in block
    workspace.write(block + PROVIDERS + KEY.format(name="data", algorithm="AES_256", targets=EVERY_TARGET))

    env = {**pins, "KEYPLAN_LOG": "DEBUG"}
    planfile = workspace.path / "hsm.kpplan"
    outputs: list[Result] = [created]
    for args in (
        ("validate",),
        ("plan", "-json"),
        ("plan", f"-out={planfile}"),
        ("show", str(planfile), "-json"),
        ("show", str(planfile), "-markdown"),
        ("apply", str(planfile)),
        ("plan", "-detailed-exitcode"),
        ("drift", "-json"),
        ("show", "-json"),
        ("state", "show", "key.data"),
        ("graph",),
    ):
        result = workspace.keyplan(*args, env=env)
        assert result.code == 0, (args, result.output)
        outputs.append(result)

    # The plan shows the method negotiated per target: SoftHSM does SHA-1 only, inside the HSM.
    plan_text = outputs[3].stdout
    assert "wrap:        RSAES_OAEP_SHA_1 under RSA-3072, inside the HSM" in plan_text  # AWS: AES by direct OAEP
    assert plan_text.count("wrap:        RSA_AES_KEY_WRAP_SHA_1 under RSA-") == 2  # Google Cloud, Azure
    assert "SHA_256" not in plan_text
    document = json.loads(outputs[2].stdout)
    wraps = {c["target"]: c["wrap"] for c in document["changes"]}
    assert wraps["aws.main"] == {"method": "RSAES_OAEP_SHA_1", "wrapping_key_bits": 3072, "in_hardware": True}
    assert wraps["gcp.main"]["method"] == wraps["azure.hsm"]["method"] == "RSA_AES_KEY_WRAP_SHA_1"
    assert all(w["in_hardware"] for w in wraps.values())
    assert "No changes" in outputs[7].stdout, "the second plan is clean"

    # Generated in the token: the handle names a token object, which is sensitive and still there.
    record = workspace.state()["keys"]["key.data"]
    handle, fingerprint = record["materials"][0]["handle"], record["materials"][0]["fingerprint"]
    assert handle.startswith("keyplan:key.data:v1#") and fingerprint.startswith("aeskcv:")
    with token_session(workspace, pins["KEYPLAN_HSM_PIN"]) as session:
        (secret_key,) = list(session.get_objects({Attribute.LABEL: "keyplan:key.data:v1"}))
        assert secret_key[Attribute.SENSITIVE] is True and secret_key[Attribute.EXTRACTABLE] is True
        assert secret_key[Attribute.NEVER_EXTRACTABLE] is False and secret_key[Attribute.TOKEN] is True

    # Every emulator unwrapped material with the check value the token computed.
    assert sorted(record["targets"]) == ["aws.main", "azure.hsm", "gcp.main"]
    for target, target_record in record["targets"].items():
        assert held_for(emulator_fingerprints(workspace, target), target_record["remote_id"]) == [fingerprint], target
    materials = unwrapped_materials(workspace)
    assert {t: len(m) for t, m in materials.items()} == {"aws.main": 1, "gcp.main": 1, "azure.hsm": 1}
    secret = materials["aws.main"][0]
    assert materials["gcp.main"] == materials["azure.hsm"] == [secret], "one material, three clouds"
    assert fingerprint_material(MaterialKind.SYMMETRIC, SecretBytes(secret)) == fingerprint

    # Neither the material nor a PIN appears in any artifact, log line or terminal output.
    artifacts = [p for p in workspace.path.rglob("*") if p.is_file() and "emulators" not in p.parts and p != pins_file]
    names = {p.name for p in artifacts}
    assert {"keyplan.kpstate.json", "hsm.kpplan", "softhsm2.conf", "audit.jsonl"} <= names
    assert any("tokens" in p.parts for p in artifacts), "the token's own files are scanned too"
    blobs = [(str(p.relative_to(workspace.path)), p.read_bytes()) for p in artifacts]
    blobs += [(f"output {i}", r.output.encode()) for i, r in enumerate(outputs)]
    assert any(b"DEBUG: pkcs11.hsm: wrapped keyplan:key.data:v1#" in blob for _, blob in blobs), "debug logging was on"
    needles = secret_forms(secret) + [pin.encode() for pin in pins.values()]
    for needle in needles:
        for name, blob in blobs:
            assert needle not in blob, f"material or PIN found in {name}"


# ---- what SoftHSM cannot do, refused at plan time ------------------------------------------


def test_asymmetric_keys_from_softhsm_are_refused_at_plan_time(workspace: Workspace) -> None:
    init_token(workspace)
    workspace.write(
        config(keys=(("signing", "EC_P256", "provider.aws.main"), ("rsa", "RSA_3072", "provider.gcp.main")))
    )
    result = workspace.keyplan("plan", env=PINS)
    assert_diagnostic(result, "No way to import this key into its target")
    assert (
        "Source pkcs11.hsm pads PKCS#8 private keys before wrapping, so aws.main would reject the EC_P256"
        in result.stderr
    )
    assert "gcp.main would reject the RSA_3072" in result.stderr
    assert "a production HSM" in result.stderr and "CKM_RSA_AES_KEY_WRAP" in result.stderr
    assert "main.kp.hcl:" in result.stderr, "the diagnostic points at the key block"
    assert not workspace.state_path.exists()


# ---- token failures: diagnostics, exit 1, no traceback, no PIN -----------------------------


def test_wrong_pin_unset_pin_missing_token_and_missing_module(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEYPLAN_HSM_PIN", raising=False)
    init_token(workspace)
    workspace.write(config(keys=(("data", "AES_256", "provider.aws.main"),)))

    wrong = workspace.keyplan("plan", env={"KEYPLAN_HSM_PIN": "000000"})
    assert_diagnostic(wrong, "Cannot open source pkcs11.hsm: Wrong PIN for the PKCS#11 token")
    assert "on main.kp.hcl:2:" in wrong.stderr and "000000" not in wrong.output

    unset = run_keyplan(workspace.path, "apply", "-auto-approve")
    assert_diagnostic(unset, "Cannot open source pkcs11.hsm: The PKCS#11 user PIN is not set")
    assert "KEYPLAN_HSM_PIN" in unset.stderr

    workspace.write(config(keys=(("data", "AES_256", "provider.aws.main"),), label="no-such-token"))
    missing = workspace.keyplan("plan", env=PINS)
    assert_diagnostic(missing, "Cannot open source pkcs11.hsm: PKCS#11 token not found")
    assert "No token labelled 'no-such-token'" in missing.stderr and "Tokens found: 'keyplan'" in missing.stderr

    workspace.write(config(keys=(("data", "AES_256", "provider.aws.main"),), module="/nonexistent/libpkcs11.so"))
    no_module = workspace.keyplan("apply", "-auto-approve", env=PINS)
    assert_diagnostic(no_module, "Cannot open source pkcs11.hsm: PKCS#11 library not found")
    assert "/nonexistent/libpkcs11.so" in no_module.stderr and "softhsm2" in no_module.stderr
    for result in (wrong, unset, missing, no_module):
        assert PIN not in result.output and SO_PIN not in result.output
    assert not workspace.state_path.exists(), "nothing was applied"


def test_key_deleted_from_the_token_is_reported_at_plan_time(workspace: Workspace) -> None:
    init_token(workspace)
    workspace.write(config(keys=(("data", "AES_256", "provider.aws.main"),)))
    assert workspace.keyplan("apply", "-auto-approve", env=PINS).code == 0
    handle = workspace.state()["keys"]["key.data"]["materials"][0]["handle"]
    with token_session(workspace) as session:
        for found in session.get_objects({Attribute.LABEL: handle.split("#")[0]}):
            found.destroy()
    arn = workspace.state()["keys"]["key.data"]["targets"]["aws.main"]["remote_id"]
    with workspace.aws() as (kms, _):
        kms.delete_imported_key_material(KeyId=arn)  # the cloud lost its copy: keyplan must wrap again

    # The re-import needs the material the token no longer has: the plan says so before any change.
    plan = workspace.keyplan("plan", env=PINS)
    assert_diagnostic(plan, "Key material is missing from its source")
    assert handle in plan.stderr and "-replace='key.data'" in plan.stderr
    apply = workspace.keyplan("apply", "-auto-approve", env=PINS)
    assert_diagnostic(apply, "Key material is missing from its source")
    assert workspace.emulator_fingerprints() == {}, "nothing was imported"


# ---- init-dev refuses what would lose or expose a PIN ----------------------------------------


def test_init_dev_without_pins_or_with_an_existing_file_or_label(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in PINS:
        monkeypatch.delenv(variable, raising=False)
    no_pins = run_keyplan(workspace.path, "hsm", "init-dev")
    assert_diagnostic(no_pins, "No PIN for the development token")
    assert "--pin-file" in no_pins.stderr
    assert not (workspace.path / ".keyplan" / "softhsm" / "tokens").exists()

    (workspace.path / "taken.env").write_text("keep me\n")
    taken = workspace.keyplan("hsm", "init-dev", "--pin-file", "taken.env")
    assert_diagnostic(taken, "The PIN file exists")
    assert (workspace.path / "taken.env").read_text() == "keep me\n"

    short = workspace.keyplan("hsm", "init-dev", env={**PINS, "KEYPLAN_HSM_PIN": "12"})
    assert_diagnostic(short, "The user PIN in KEYPLAN_HSM_PIN has the wrong length")

    made = init_token(workspace, "--label", "dev", "--name", "dev")
    assert 'source "pkcs11" "dev" {' in made.stdout and 'token_label = "dev"' in made.stdout
    assert PIN not in made.output and SO_PIN not in made.output
    assert "keyplan stored neither" in made.stdout
    again = workspace.keyplan("hsm", "init-dev", "--label", "dev", "--pin-file", "again.env", env=PINS)
    assert_diagnostic(again, "A development token with this label exists")
    assert not (workspace.path / "again.env").exists(), "the PIN file of a failed init is removed"


# ---- wrap_with_trusted: the security officer's step ------------------------------------------


def test_trusted_wrapping_needs_the_security_officer_step(workspace: Workspace) -> None:
    init_token(workspace)
    workspace.write(config(keys=(("data", "AES_256", "provider.aws.main"),), extra="wrap_with_trusted = true"))

    plan = workspace.keyplan("plan", env=PINS)
    assert plan.code == 0, plan.output
    assert "note:" in plan.stdout and "keyplan hsm trust 'key.data' --target aws.main" in plan.stdout
    early = workspace.keyplan("hsm", "trust", "key.data", env=PINS)
    assert_diagnostic(early, "key.data does not exist at aws.main yet")
    first = workspace.keyplan("apply", "-auto-approve", env=PINS)
    assert_diagnostic(first, "wrap_material key.data @ aws.main: The cloud's wrapping key is not trusted by the token")
    assert "keyplan hsm trust 'key.data'" in first.stderr

    no_so_pin = workspace.keyplan("hsm", "trust", "key.data", env={"KEYPLAN_HSM_PIN": PIN})
    assert_diagnostic(no_so_pin, "The security officer PIN is not set")
    wrong = workspace.keyplan("hsm", "trust", "key.data", env={**PINS, "KEYPLAN_HSM_SO_PIN": "11111111"})
    assert_diagnostic(wrong, "Source pkcs11.hsm: Wrong PIN for the PKCS#11 token")
    elsewhere = workspace.keyplan("hsm", "trust", "key.data", "--target", "gcp.main", env=PINS)
    assert_diagnostic(elsewhere, "key.data is not imported into gcp.main")

    trusted = workspace.keyplan("hsm", "trust", "key.data", "--target", "aws.main", env=PINS)
    assert trusted.code == 0, trusted.output
    assert "Trusted: the wrapping key of aws.main for key.data (RSA-3072, RSAES_OAEP_SHA_1, spki:" in trusted.stdout
    again = workspace.keyplan("hsm", "trust", "key.data", env=PINS)
    assert again.code == 0 and "Already trusted" in again.stdout

    second = workspace.keyplan("apply", "-auto-approve", env=PINS)
    assert second.code == 0, second.output
    record = workspace.state()["keys"]["key.data"]
    assert workspace.emulator_fingerprints() == {
        record["targets"]["aws.main"]["remote_id"]: [record["materials"][0]["fingerprint"]]
    }
    done = workspace.keyplan("hsm", "trust", "key.data", env=PINS)
    assert done.code == 0 and "Nothing to trust" in done.stdout
    for result in (early, first, no_so_pin, wrong, trusted, again, second):
        assert PIN not in result.output and SO_PIN not in result.output


def test_trust_refuses_keys_that_do_not_need_it(workspace: Workspace) -> None:
    init_token(workspace)
    workspace.write(
        config(keys=(("data", "AES_256", "provider.aws.main"),))
        + '\nsource "software" "soft" {}\n'
        + 'key "soft" {\n  algorithm = "AES_256"\n  source = source.software.soft\n  targets = [provider.aws.main]\n}\n'
    )
    plain = workspace.keyplan("hsm", "trust", "key.data", env=PINS)
    assert_diagnostic(plain, "The source does not wrap with trusted keys only")
    soft = workspace.keyplan("hsm", "trust", "key.soft", env=PINS)
    assert_diagnostic(soft, "Not a key of a PKCS#11 source")
    unknown = workspace.keyplan("hsm", "trust", "key.nope", env=PINS)
    assert_diagnostic(unknown, "No key key.nope in the configuration")


def test_a_token_object_deleted_after_plan_out_stops_the_saved_apply(workspace: Workspace) -> None:
    init_token(workspace)
    workspace.write(config(keys=(("data", "AES_256", "provider.aws.main"),)))
    assert workspace.keyplan("apply", "-auto-approve", env=PINS).code == 0
    workspace.write(config(keys=(("data", "AES_256", "provider.aws.main"), ("more", "AES_256", "provider.aws.main"))))
    planfile = workspace.path / "review.kpplan"
    assert workspace.keyplan("plan", f"-out={planfile}", env=PINS).code == 0
    handle = workspace.state()["keys"]["key.data"]["materials"][0]["handle"]
    with token_session(workspace) as session:
        for found in session.get_objects({Attribute.LABEL: handle.split("#")[0]}):
            found.destroy()
    with workspace.aws() as (kms, _):
        before = len(kms.list_keys()["Keys"])

    applied = workspace.keyplan("apply", str(planfile), env=PINS)
    assert_diagnostic(applied, "Key material is missing from its source")
    assert "key.data material version 1" in applied.stderr and handle in applied.stderr
    assert "Apply complete!" not in applied.output
    with workspace.aws() as (kms, _):
        assert len(kms.list_keys()["Keys"]) == before, "nothing was created"
    assert sorted(workspace.state()["keys"]) == ["key.data"]
