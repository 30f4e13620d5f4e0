"""A local Google Cloud KMS: the `cloudkms.googleapis.com/v1` REST API that the official
`google-cloud-kms` client speaks with `transport="rest"`, enforcing the import rules of BYOK.md §4.

It keeps key rings, crypto keys, versions and import jobs in a `DocumentStore`, takes every time
decision from its `Clock`, and really unwraps imported material with the private half of the
import job's RSA key. Choices where Google's behaviour is not documented, made so that clients
must handle the general case:

- An import job answers `PENDING_GENERATION` to its creation and turns `ACTIVE` on the first
  read after it (its RSA key is generated then); it is `EXPIRED` three days after creation.
- `ImportCryptoKeyVersion` checks the request synchronously (missing or double wrapped-key
  fields, unknown algorithm, inactive job, protection-level mismatch, direct OAEP for an RSA
  target, ineligible re-import): `400 INVALID_ARGUMENT` for a malformed request,
  `400 FAILED_PRECONDITION` for a resource in the wrong state. Material that does not unwrap,
  has the wrong length or format, or differs from what a re-imported version held, is accepted
  as a version in `PENDING_IMPORT` that turns `IMPORT_FAILED` with `importFailureReason` on the
  next read; good material turns `ENABLED` on the next read.
- An imported version never becomes primary on its own: `updatePrimaryVersion` sets it.
- A version in `DESTROY_SCHEDULED` becomes `DESTROYED` once the clock passes `destroyTime`;
  its material is dropped then (a digest is kept so re-import can demand identical bytes).

Enums are accepted as names or numbers; answers use numbers when the request asks for
`enum-encoding=int` (the client always does) and names otherwise.

Modules: `core` (routing, rendering, lazy state), `keys`, `versions`, `imports`, `crypto` (the
methods, by resource), `protos` (enums, algorithm rules, limits), `wire` (names, JSON members,
filters, pages), `material`, `errors`.
"""

from __future__ import annotations

import re

from keyplan.limits import RateClass
from providers.emulation.main import serve_main
from providers.gcp.emulator.crypto import CryptoRoutes
from providers.gcp.emulator.imports import ImportRoutes
from providers.gcp.emulator.keys import KeyRoutes
from providers.gcp.emulator.versions import VersionRoutes
from providers.gcp.emulator.wire import JOB, JOBS, KEY, KEYS, LOCATION, RING, RINGS, VERSION, VERSIONS, Handler
from providers.gcp.quotas import RATE_CLASSES, READ, WRITE


class GcpKmsEmulator(KeyRoutes, VersionRoutes, ImportRoutes, CryptoRoutes):
    """Google Cloud KMS v1 over REST, for the unmodified `google-cloud-kms` client."""

    quota_window = 60.0  # Cloud KMS counts requests per minute

    def quota_classes(self) -> tuple[RateClass, ...]:
        """Read and write requests per minute (cryptographic requests are not limited here)."""
        operations = [operation for _, _, operation, _ in self._routes]
        reads = tuple(op for op in operations if op.startswith(("Get", "List")) and op != "GetPublicKey")
        writes = tuple(op for op in operations if op.startswith(("Create", "Update", "Import", "Destroy", "Restore")))
        by_name = {c.name: c for c in RATE_CLASSES}
        return (
            by_name[READ].model_copy(update={"operations": reads}),
            by_name[WRITE].model_copy(update={"operations": writes}),
        )

    def _route_table(self) -> list[tuple[str, re.Pattern[str], str, Handler]]:
        return [
            ("GET", re.compile(rf"^/v1/({LOCATION})/keyRings$"), "ListKeyRings", self._list_key_rings),
            ("POST", re.compile(rf"^/v1/({LOCATION})/keyRings$"), "CreateKeyRing", self._create_key_ring),
            ("GET", re.compile(rf"^/v1/({RING})$"), "GetKeyRing", self._get_key_ring),
            ("GET", re.compile(rf"^/v1/({RING})/cryptoKeys$"), "ListCryptoKeys", self._list_crypto_keys),
            ("POST", re.compile(rf"^/v1/({RING})/cryptoKeys$"), "CreateCryptoKey", self._create_crypto_key),
            ("GET", re.compile(rf"^/v1/({KEY})$"), "GetCryptoKey", self._get_crypto_key),
            ("PATCH", re.compile(rf"^/v1/({KEY})$"), "UpdateCryptoKey", self._update_crypto_key),
            ("POST", re.compile(rf"^/v1/({KEY}(?:/cryptoKeyVersions/[^/:]+)?):encrypt$"), "Encrypt", self._encrypt),
            ("POST", re.compile(rf"^/v1/({KEY}):decrypt$"), "Decrypt", self._decrypt),
            (
                "POST",
                re.compile(rf"^/v1/({KEY}):updatePrimaryVersion$"),
                "UpdateCryptoKeyPrimaryVersion",
                self._update_primary_version,
            ),
            ("GET", re.compile(rf"^/v1/({KEY})/cryptoKeyVersions$"), "ListCryptoKeyVersions", self._list_versions),
            (
                "POST",
                re.compile(rf"^/v1/({KEY})/cryptoKeyVersions:import$"),
                "ImportCryptoKeyVersion",
                self._import_version,
            ),
            ("GET", re.compile(rf"^/v1/({VERSION})$"), "GetCryptoKeyVersion", self._get_version),
            ("PATCH", re.compile(rf"^/v1/({VERSION})$"), "UpdateCryptoKeyVersion", self._update_version),
            ("POST", re.compile(rf"^/v1/({VERSION}):destroy$"), "DestroyCryptoKeyVersion", self._destroy_version),
            ("POST", re.compile(rf"^/v1/({VERSION}):restore$"), "RestoreCryptoKeyVersion", self._restore_version),
            ("POST", re.compile(rf"^/v1/({VERSION}):rawEncrypt$"), "RawEncrypt", self._raw_encrypt),
            ("POST", re.compile(rf"^/v1/({VERSION}):rawDecrypt$"), "RawDecrypt", self._raw_decrypt),
            ("POST", re.compile(rf"^/v1/({VERSION}):macSign$"), "MacSign", self._mac_sign),
            ("POST", re.compile(rf"^/v1/({VERSION}):macVerify$"), "MacVerify", self._mac_verify),
            ("POST", re.compile(rf"^/v1/({VERSION}):asymmetricSign$"), "AsymmetricSign", self._asymmetric_sign),
            (
                "POST",
                re.compile(rf"^/v1/({VERSION}):asymmetricDecrypt$"),
                "AsymmetricDecrypt",
                self._asymmetric_decrypt,
            ),
            ("GET", re.compile(rf"^/v1/({VERSION})/publicKey$"), "GetPublicKey", self._get_public_key),
            ("GET", re.compile(rf"^/v1/({RING})/importJobs$"), "ListImportJobs", self._list_import_jobs),
            ("POST", re.compile(rf"^/v1/({RING})/importJobs$"), "CreateImportJob", self._create_import_job),
            ("GET", re.compile(rf"^/v1/({JOB})$"), "GetImportJob", self._get_import_job),
        ]


def main(argv: list[str] | None = None) -> int:
    """Serve the emulator until killed; the first line of stdout is its URL."""
    return serve_main(
        argv,
        prog="python -m providers.gcp.emulator",
        description=(__doc__ or "").splitlines()[0],
        kind="gcp",
        app=lambda args: GcpKmsEmulator,
    )


__all__ = ["JOBS", "KEYS", "RINGS", "VERSIONS", "GcpKmsEmulator", "main"]
