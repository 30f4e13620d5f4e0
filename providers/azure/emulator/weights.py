"""What one request costs of a vault's weighted transaction budget (the realistic profile):
`providers.azure.quotas.transaction_cost` of the key the request creates or touches."""

from __future__ import annotations

import base64
from typing import Any

from providers.azure.emulator.core import VaultCore
from providers.azure.quotas import CREATE, transaction_cost
from providers.emulation.app import Request


class WeightedCosts(VaultCore):
    def quota_cost(self, request: Request, operation: str, rate_class: str) -> float:
        if self.vault_kind == "managedhsm":
            return 1.0  # a Managed HSM documents no weighting
        if rate_class == CREATE:
            return transaction_cost(CREATE, None, 0, hsm=self._creates_hsm_key(request))
        parts = self._parts(request)
        if len(parts) < 2 or parts[0] not in ("keys", "deletedkeys") or not parts[1]:
            return transaction_cost(rate_class, None, 0, hsm=False)  # a listing touches no one key
        key = self._key(parts[1])
        if key is None or not key.versions:
            return transaction_cost(rate_class, None, 0, hsm=False)
        named = parts[2] if parts[0] == "keys" and len(parts) > 2 and parts[2] not in ("versions", "create") else ""
        version = self.store.get("versions", f"{key.name.lower()}/{(named or key.versions[-1]).lower()}")
        if version is None:
            return transaction_cost(rate_class, None, 0, hsm=False)
        kty = str(version.get("kty", ""))
        family = kty.removesuffix("-HSM")
        return transaction_cost(rate_class, family, _rsa_bits(version.get("public", {})), hsm=kty.endswith("-HSM"))

    @staticmethod
    def _creates_hsm_key(request: Request) -> bool:
        try:
            body: Any = request.json()
        except ValueError:
            return False  # answered as a bad request; counted as the cheaper creation
        if not isinstance(body, dict):
            return False
        jwk = body.get("key")
        kty = body.get("kty") if jwk is None else (jwk.get("kty") if isinstance(jwk, dict) else None)
        return (isinstance(kty, str) and kty.endswith("-HSM")) or body.get("Hsm") is True or body.get("hsm") is True


def _rsa_bits(public: Any) -> int:
    """The modulus size of an RSA key's public JWK members (0 for other keys)."""
    modulus = public.get("n") if isinstance(public, dict) else None
    if not isinstance(modulus, str):
        return 0
    raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    return len(raw.lstrip(b"\0")) * 8
