"""How keyplan's keys map onto Azure keys: key types and operations, key names derived from
addresses, key ids under the configured vault, the key-exchange key's prerequisite id, and the
.byok transfer blob of Azure's BYOK specification."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import keyplan
from keyplan.algorithms import Algorithm, KeyUsage, MaterialKind
from keyplan.crypto import WrapMethod
from providers.azure.settings import MANAGED_HSM_SUFFIXES

KEK_KIND = "azure-kek"
KEK_ROLE_TAG = "keyplan-role"
WRAP_METHOD = WrapMethod.RSA_AES_KEY_WRAP_SHA_1
TRANSFER_ENC = "CKM_RSA_AES_KEY_WRAP"
NAME_HASH_LENGTH = 10
NAME_READABLE_LENGTH = 80


@dataclass(frozen=True)
class AzureKeyType:
    kty: str
    crv: str | None = None
    managed_hsm_only: bool = False


def azure_key_type(algorithm: Algorithm) -> AzureKeyType | None:
    """The Azure key type a keyplan algorithm imports as; None when Azure cannot import it."""
    if algorithm.kind is MaterialKind.SYMMETRIC and algorithm.bits == 256:
        return AzureKeyType("oct-HSM", managed_hsm_only=True)
    if algorithm.kind is MaterialKind.RSA and algorithm.bits in (2048, 3072, 4096):
        return AzureKeyType("RSA-HSM")
    if algorithm.kind is MaterialKind.EC and algorithm.curve in ("P-256", "P-384"):
        return AzureKeyType("EC-HSM", crv=algorithm.curve)
    return None


def key_operations(usage: KeyUsage) -> list[str]:
    if usage is KeyUsage.SIGN:
        return ["sign", "verify"]
    return ["encrypt", "decrypt", "wrapKey", "unwrapKey"]


def key_name_for(address: str) -> str:
    """A legal, deterministic Azure key name for a keyplan address: its readable characters
    and a hash of the whole address, so distinct addresses never share a name."""
    readable = re.sub(r"[^0-9a-zA-Z]+", "-", address.removeprefix("key.")).strip("-")[:NAME_READABLE_LENGTH]
    digest = hashlib.sha256(address.encode()).hexdigest()[:NAME_HASH_LENGTH]
    return f"{readable.strip('-')}-{digest}" if readable else f"key-{digest}"


def kek_prerequisite_id(vault_url: str) -> str:
    return f"kek:{vault_url}"


def build_transfer_blob(kek_kid: str, wrapped: bytes) -> bytes:
    """The .byok transfer blob (Azure's BYOK specification) for material wrapped with
    CKM_RSA_AES_KEY_WRAP under the KEK `kek_kid` (its full versioned id)."""
    document = {
        "schema_version": "1.0.0",
        "header": {"kid": kek_kid, "alg": "dir", "enc": TRANSFER_ENC},
        "ciphertext": base64.urlsafe_b64encode(wrapped).rstrip(b"=").decode(),
        "generator": f"keyplan {keyplan.__version__}",
    }
    return json.dumps(document, separators=(",", ":")).encode()


def az_cli_vault_arguments(vault_url: str) -> list[str]:
    """How the az CLI names this vault: `--vault-name NAME` or `--hsm-name NAME`."""
    host = (urlsplit(vault_url).hostname or "").lower()
    flag = "--hsm-name" if host.endswith(MANAGED_HSM_SUFFIXES) else "--vault-name"
    return [flag, host.split(".")[0]]


def jwk_member(jwk: Any, name: str) -> Any:
    """A JSON Web Key member; the SDK's JsonWebKey sets its members dynamically."""
    return getattr(jwk, name, None)


def modulus_bits(n: bytes | None) -> int:
    return len((n or b"").lstrip(b"\x00")) * 8


def algorithm_from_jwk(kty: str | None, n: bytes | None, crv: str | None) -> str | None:
    family = (kty or "").removesuffix("-HSM")
    if family == "RSA" and n:
        return f"RSA_{modulus_bits(n)}"
    if family == "EC" and crv in ("P-256", "P-384"):
        return "EC_" + crv.replace("-", "")
    if family == "oct":
        return "AES_256"
    return None



def same_expiry(current: datetime | None, desired: datetime | None) -> bool:
    """Expiry is kept when none is desired; otherwise it matches to the minute (an import sets
    it from the apply's clock, an update from the version's creation time)."""
    if desired is None:
        return True
    return current is not None and abs((current - desired).total_seconds()) < 60


def remote_id_for(vault_url: str, name: str) -> str:
    """The versionless key id state records: under the configured vault, wherever it is reached."""
    return f"{vault_url}/keys/{name}"


def logical_kid(vault_url: str, kid: str) -> str:
    """A kid as the configured vault names it (the client may talk to another endpoint)."""
    return vault_url + urlsplit(kid).path
