"""The software key source at run time: generates material, seals it into the keystore, and
wraps it for a cloud with keyplan's own wrap formats. The material is decrypted into
`SecretBytes` only for the duration of one wrap and wiped afterwards."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from keyplan.algorithms import ALGORITHMS
from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.wrap import WrapMethod, wrap
from keyplan.provider import (
    GeneratedMaterial,
    GenerateRequest,
    KeySource,
    MaterialInfo,
    SourceCapabilities,
    SourceError,
    WrappedMaterial,
    WrapRequest,
)
from providers.software.keystore import Keystore, KeystoreEntry, MasterKey
from providers.software.material import generate_material

CAPABILITIES = SourceCapabilities(
    algorithms=frozenset(ALGORITHMS),
    wrap_methods=frozenset(WrapMethod),
    exact_pkcs8=True,
    wraps_in_hardware=False,
    notes=("material is generated in software and kept in an encrypted keystore file",),
)


def material_handle(address: str, version: int) -> str:
    """Readable from the address and version; the random suffix means a re-generate (say after
    a crash before the state was written) adds an entry instead of replacing one."""
    return f"{address}/v{version}/{secrets.token_hex(6)}"


class SoftwareSource(KeySource):
    def __init__(self, address: str, keystore: Keystore) -> None:
        self.address = address
        self._keystore = keystore

    def capabilities(self) -> SourceCapabilities:
        return CAPABILITIES

    def generate(self, request: GenerateRequest) -> GeneratedMaterial:
        material = generate_material(request.algorithm)
        try:
            fingerprint = fingerprint_material(request.algorithm.kind, material)
            handle = material_handle(request.address, request.version)
            created_at = datetime.now(UTC)
            self._keystore.add(handle, request.algorithm.name, fingerprint, created_at, material)
        finally:
            material.wipe()
        return GeneratedMaterial(handle=handle, fingerprint=fingerprint, created_at=created_at)

    def wrap(self, request: WrapRequest) -> WrappedMaterial:
        found = self._entry(request.handle)
        if found is None:
            raise SourceError(
                "Key material not found in the software keystore",
                f"The handle {request.handle!r} is not in {self._keystore.path}. The keystore was "
                "replaced or the entry removed; generate new material for this key.",
            )
        entry, master = found
        if entry.algorithm != request.algorithm.name:
            raise SourceError(
                "Key material has a different algorithm",
                f"The handle {request.handle!r} holds {entry.algorithm} material, not "
                f"{request.algorithm.name}. The state and the keystore disagree; generate new material.",
            )
        material = self._keystore.open_entry(request.handle, entry, master)
        try:
            blob = wrap(request.method, request.wrapping_public_key, material)
        except ValueError as exc:
            raise SourceError(
                f"Cannot wrap {request.algorithm.name} material with {request.method.value}",
                f"{exc}. Choose a method the target accepts that can carry this material "
                "(an RSA_AES_KEY_WRAP method carries any size).",
            ) from None
        finally:
            material.wipe()
        return WrappedMaterial(method=request.method, blob=blob)

    def describe(self, handle: str) -> MaterialInfo:
        found = self._entry(handle)
        if found is None:
            return MaterialInfo(handle=handle, present=False)
        return MaterialInfo(handle=handle, fingerprint=found[0].fingerprint, present=True)

    def close(self) -> None:
        self._keystore.close()

    def _entry(self, handle: str) -> tuple[KeystoreEntry, MasterKey] | None:
        """The entry under `handle` and the unlocked master key; unlocking proves the passphrase
        is right, so a wrong one is reported on first use (a plan), not on the first wrap."""
        document = self._keystore.read()
        if document is None:
            return None
        master = self._keystore.unlock(document)
        entry = document.entries.get(handle)
        return None if entry is None else (entry, master)
