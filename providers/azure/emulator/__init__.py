"""The Azure Key Vault / Managed HSM emulator: the keys data plane over HTTPS, as the real
`azure-keyvault-keys` client speaks it.

One emulator serves one vault. Its kind is fixed at construction: a Key Vault (Premium) or a
Managed HSM (`ManagedHsmEmulator`), which decides the bearer challenge's resource, the recovery
level and whether oct-HSM keys may be imported. What it honours (BYOK.md §3):

- the 401 bearer challenge on requests without `Authorization`; any bearer token is accepted;
- key-exchange keys: RSA-HSM 2048/3072/4096 whose `key_ops` are exactly `["import"]`;
- BYOK import (`PUT /keys/{name}`): the `key_hsm` transfer blob (base64 or base64url of the
  .byok JSON) names a KEK of this vault in `header.kid`, `enc` CKM_RSA_AES_KEY_WRAP; the
  ciphertext is really unwrapped (RSA-OAEP-SHA1 + AES-KWP) and the material checked against
  `kty`/`crv`; importing onto an existing name adds a version;
- soft delete (`/deletedkeys`), recover, purge (403 under purge protection), 409
  ObjectIsDeletedButRecoverable for names held by deleted keys, automatic purge when the
  retention period has passed on the emulator's clock;
- `maxresults` <= 25 and `nextLink` pagination; tag limits (15 per key, 256 characters);
- encrypt/decrypt: A256GCM for oct keys, RSA-OAEP / RSA-OAEP-256 for RSA keys;
- wrapkey/unwrapkey: A128KW/A192KW/A256KW and CKM_AES_KEY_WRAP (RFC 3394), CKM_AES_KEY_WRAP_PAD
  (RFC 5649) for oct keys of the matching size, RSA-OAEP / RSA-OAEP-256 / RSA1_5 for RSA keys;
  each operation only when the key's `key_ops` allow it (403 KeyOperationForbidden otherwise);
- Key Vault error bodies `{"error": {"code", "message", "innererror"}}`;
- under the realistic profile, a vault's weighted transaction budget: each call spends units by
  the type of the key it creates or touches (`weights`, `providers.azure.quotas.transaction_cost`).

Names are case-insensitive as in Azure; the name's first spelling is kept. Object ids are built
from the `Host` the client used, so they match what the SDK believes the vault URL is.

Modules: `core` (challenge, dispatch, store access, bundles), `keys`, `listing`, `deletion`,
`crypto` (the operations, by resource), `bodies` (typed request bodies), `documents` (what is
stored), `jwk`, `limits`, `errors`, `weights` (transaction costs).
"""

from __future__ import annotations

import argparse
from typing import ClassVar
from urllib.parse import urlsplit

from keyplan.limits import RateClass
from providers.azure.emulator.bodies import CreateKeyBody, ImportKeyBody, KeyOperationBody, UpdateKeyBody
from providers.azure.emulator.crypto import CryptoRoutes
from providers.azure.emulator.deletion import DeletionRoutes
from providers.azure.emulator.errors import bad_parameter
from providers.azure.emulator.keys import KeyRoutes
from providers.azure.emulator.limits import VaultKind
from providers.azure.emulator.listing import ListingRoutes
from providers.azure.emulator.weights import WeightedCosts
from providers.azure.quotas import MANAGED_HSM_CLASSES, VAULT_COUNTED_CLASSES
from providers.emulation.app import Request, Response
from providers.emulation.main import serve_main


class AzureKeyVaultEmulator(KeyRoutes, ListingRoutes, DeletionRoutes, CryptoRoutes, WeightedCosts):
    """One Key Vault (or, in the subclass, one Managed HSM) over a DocumentStore."""

    quota_window = 10.0  # Key Vault counts transactions per 10 seconds

    def quota_classes(self) -> tuple[RateClass, ...]:
        return MANAGED_HSM_CLASSES if self.vault_kind == "managedhsm" else VAULT_COUNTED_CLASSES

    def _route(self, request: Request) -> Response:
        operation = self.operation(request)
        parts = self._parts(request)
        base = self._base(request)
        if request.query_one("api-version") is None:
            raise bad_parameter("The request URI must contain an api-version parameter.")
        if operation == "GetKeys":
            return self.list_keys(request, base)
        if operation == "GetDeletedKeys":
            return self.list_deleted_keys(request, base)
        if operation == "Unknown":
            raise bad_parameter(f"The operation {request.method} {request.path} is not supported by this vault.")
        name = parts[1]
        handlers = {
            "CreateKey": lambda: self.create_key(name, self._body(request, CreateKeyBody), base),
            "ImportKey": lambda: self.import_key(name, self._body(request, ImportKeyBody), request, base),
            "GetKey": lambda: self.get_key(name, parts[2] if len(parts) > 2 else "", base),
            "UpdateKey": lambda: self.update_key(
                name, parts[2] if len(parts) > 2 else "", self._body(request, UpdateKeyBody), base
            ),
            "GetKeyVersions": lambda: self.list_versions(name, request, base),
            "DeleteKey": lambda: self.delete_key(name, base),
            "GetDeletedKey": lambda: self.get_deleted_key(name, base),
            "PurgeDeletedKey": lambda: self.purge_deleted_key(name),
            "RecoverDeletedKey": lambda: self.recover_deleted_key(name, base),
            "Encrypt": lambda: self.encrypt(name, parts[2], self._body(request, KeyOperationBody), base),
            "Decrypt": lambda: self.decrypt(name, parts[2], self._body(request, KeyOperationBody), base),
            "Sign": lambda: self.sign(name, parts[2], self._body(request, KeyOperationBody), base),
            "WrapKey": lambda: self.wrap_key(name, parts[2], self._body(request, KeyOperationBody), base),
            "UnwrapKey": lambda: self.unwrap_key(name, parts[2], self._body(request, KeyOperationBody), base),
        }
        return handlers[operation]()


class ManagedHsmEmulator(AzureKeyVaultEmulator):
    """A Managed HSM: hardware keys only, oct-HSM imports allowed, soft delete always on."""

    vault_kind: ClassVar[VaultKind] = "managedhsm"


def emulator_class(
    kind: VaultKind, *, purge_protection: bool = False, retention_days: int = 90, vault_url: str | None = None
) -> type[AzureKeyVaultEmulator]:
    """The app class `start_embedded` should build for a vault of this kind and these properties
    (it constructs apps from `(store, clock)` alone, so the properties travel as class defaults).
    `vault_url` names the vault the emulator stands in for."""
    parent = ManagedHsmEmulator if kind == "managedhsm" else AzureKeyVaultEmulator
    vault_host = urlsplit(vault_url).hostname if vault_url else None
    if not purge_protection and retention_days == 90 and vault_host is None:
        return parent
    return type(
        f"{parent.__name__}WithOptions",
        (parent,),
        {
            "default_purge_protection": purge_protection,
            "default_retention_days": retention_days,
            "vault_host": vault_host,
        },
    )


def main(argv: list[str] | None = None) -> int:
    """Serve one emulated vault until killed; the URL is the first line of stdout, the CA
    certificate's path the second."""

    def arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--kind", choices=["vault", "managedhsm"], default="vault")
        parser.add_argument("--purge-protection", action="store_true")
        parser.add_argument("--retention-days", type=int, default=90)
        parser.add_argument("--vault-url", help="The vault this emulator stands in for, e.g. https://x.vault.azure.net.")

    return serve_main(
        argv,
        prog="python -m providers.azure.emulator",
        description=(__doc__ or "").split("\n")[0],
        kind="azure",
        app=lambda args: emulator_class(
            args.kind, purge_protection=args.purge_protection, retention_days=args.retention_days, vault_url=args.vault_url
        ),
        arguments=arguments,
    )


__all__ = ["AzureKeyVaultEmulator", "ManagedHsmEmulator", "emulator_class", "main"]
