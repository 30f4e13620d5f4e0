"""Keys: create (key-exchange keys among them), BYOK import of a .byok transfer blob (really
unwrapped with the KEK and checked against kty/crv), and update."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from keyplan.algorithms import MaterialKind
from keyplan.crypto import SecretBytes, WrapMethod, fingerprint_material, unwrap
from keyplan.crypto.wrap import UnwrapError
from providers.azure.emulator.bodies import (
    CreateKeyBody,
    ImportKeyBody,
    TransferBlob,
    UpdateKeyBody,
)
from providers.azure.emulator.core import VaultCore
from providers.azure.emulator.errors import bad_parameter
from providers.azure.emulator.jwk import public_members, stored_rsa_key
from providers.azure.emulator.limits import (
    AES_SIZES,
    CURVES,
    RSA_SIZES,
    TRANSFER_ENC,
)
from providers.emulation import Request, Response
from providers.emulation.material import pkcs8_material, private_material


class KeyRoutes(VaultCore):
    def create_key(self, name: str, body: CreateKeyBody, base: str) -> Response:
        with self.store.transaction():
            existing = self._check_name_free(name)
            family = self._check_kty(body.kty, imported=False)
            ops = self._check_ops(body.key_ops, family)
            private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None
            crv = (body.crv or "P-256") if family == "EC" else None
            if family == "RSA":
                size = body.key_size or 2048
                if size not in RSA_SIZES:
                    raise bad_parameter(f"RSA key size {size} is not supported; use 2048, 3072 or 4096.")
                private_key = rsa.generate_private_key(public_exponent=body.public_exponent or 65537, key_size=size)
            elif family == "EC":
                assert crv is not None
                if crv not in CURVES:
                    raise bad_parameter(f"The curve {crv!r} is not supported.")
                private_key = ec.generate_private_key(CURVES[crv])
            if private_key is not None:
                secret = pkcs8_material(private_key).reveal()
                public = public_members(private_key, crv)
            else:
                size = (body.key_size or 256) // 8
                if size not in AES_SIZES:
                    raise bad_parameter("oct-HSM key size must be 128, 192 or 256 bits.")
                secret, public = os.urandom(size), {}
            version = self._add_version(
                existing,
                name=name,
                kty=body.kty,
                key_ops=ops,
                public=public,
                secret=secret,
                attributes=body.attributes,
                tags=body.tags,
            )
        return self.get_key(name, version, base)

    def import_key(self, name: str, body: ImportKeyBody, request: Request, base: str) -> Response:
        with self.store.transaction():
            existing = self._check_name_free(name)
            jwk = body.key
            family = self._check_kty(jwk.kty, imported=True)
            if not jwk.kty.endswith("-HSM") or not jwk.key_hsm:
                raise bad_parameter(
                    "This vault accepts only BYOK imports: kty must be RSA-HSM, EC-HSM or oct-HSM with key_hsm set."
                )
            ops = self._check_ops(jwk.key_ops, family)
            if "import" in ops:
                raise bad_parameter("An imported key cannot be a key-exchange key.")
            blob = self._transfer_blob(jwk.key_hsm)
            kek_private = self._transfer_kek(blob, request)
            try:
                material = unwrap(WrapMethod.RSA_AES_KEY_WRAP_SHA_1, kek_private, blob.ciphertext)
            except (UnwrapError, ValueError):
                raise bad_parameter(
                    "The key_hsm ciphertext could not be decrypted with the key-exchange key named in its header."
                ) from None
            public, kind = self._check_material(family, jwk.crv, material)
            try:
                version = self._add_version(
                    existing,
                    name=name,
                    kty=jwk.kty,
                    key_ops=ops,
                    public=public,
                    secret=material.reveal(),
                    attributes=body.attributes,
                    tags=body.tags,
                    fingerprint=fingerprint_material(kind, material),
                )
            finally:
                material.wipe()
        return self.get_key(name, version, base)

    def _transfer_blob(self, key_hsm: bytes) -> TransferBlob:
        try:
            blob = TransferBlob.model_validate(json.loads(key_hsm))
        except (ValueError, ValidationError):  # not JSON, or not a transfer blob
            raise bad_parameter("The property key_hsm must be an encoded BYOK transfer blob (.byok JSON).") from None
        if blob.schema_version != "1.0.0":
            raise bad_parameter(f"The transfer blob schema_version {blob.schema_version!r} is not supported.")
        if blob.header.alg != "dir" or blob.header.enc != TRANSFER_ENC:
            raise bad_parameter(f"The transfer blob header must have alg 'dir' and enc '{TRANSFER_ENC}'.")
        return blob

    def _transfer_kek(self, blob: TransferBlob, request: Request) -> rsa.RSAPrivateKey:
        """The private half of the KEK the blob's header names: it must be a key of this vault
        whose key_ops are exactly ["import"], enabled and within its validity period."""
        kid = urlsplit(blob.header.kid)
        parts = kid.path.strip("/").split("/")
        own_hosts = {self._base(request).removeprefix("https://"), self.vault_host}
        if kid.scheme != "https" or kid.netloc.lower().removesuffix(":443") not in own_hosts or len(parts) != 3:
            raise bad_parameter("The transfer blob's header.kid must be the versioned id of a key in this vault.")
        if parts[0] != "keys":
            raise bad_parameter("The transfer blob's header.kid must be the versioned id of a key in this vault.")
        kek_key = self._key(parts[1])
        if kek_key is None or kek_key.deleted is not None or parts[2].lower() not in kek_key.versions:
            raise bad_parameter(f"The key-exchange key {blob.header.kid} was not found in this vault.")
        kek = self._version(kek_key, parts[2].lower())
        if kek.key_ops != ["import"] or kek.kty != "RSA-HSM":
            raise bad_parameter("The key-exchange key must be an RSA-HSM key whose only key operation is 'import'.")
        self._check_usable(kek, "import")
        return stored_rsa_key(kek.private)

    def _check_material(
        self, family: str, crv: str | None, material: SecretBytes
    ) -> tuple[dict[str, str], MaterialKind]:
        if family == "oct":
            if len(material) not in AES_SIZES:
                raise bad_parameter("The imported oct-HSM key must be 128, 192 or 256 bits long.")
            return {}, MaterialKind.SYMMETRIC
        parsed = private_material(material)
        if not parsed.valid:
            raise bad_parameter("The imported key is not a valid PKCS#8 private key.")
        if family == "RSA":
            if not isinstance(parsed.key, rsa.RSAPrivateKey) or not parsed.is_rsa(*RSA_SIZES):
                raise bad_parameter("The imported key must be an RSA private key of 2048, 3072 or 4096 bits.")
            return public_members(parsed.key, None), MaterialKind.RSA
        if crv is None:
            raise bad_parameter("EC-HSM imports must name the curve (crv).")
        if not isinstance(parsed.key, ec.EllipticCurvePrivateKey) or parsed.curve_name != crv:
            raise bad_parameter(f"The imported key is not an EC private key on curve {crv}.")
        return public_members(parsed.key, crv), MaterialKind.EC

    def update_key(self, name: str, version: str, body: UpdateKeyBody, base: str) -> Response:
        with self.store.transaction():
            key = self._live_key(name)
            stored = self._version(key, version)
            family = stored.kty.removesuffix("-HSM")
            updates: dict[str, Any] = {}
            if body.key_ops is not None:
                updates["key_ops"] = self._check_ops(body.key_ops, family)
            if body.tags is not None:
                updates["tags"] = self._check_tags(body.tags)
            attributes = stored.attributes.model_copy(update={"updated": self._now()})
            if body.attributes is not None:
                changed = body.attributes.model_dump(exclude_none=True, exclude={"exportable"})
                attributes = attributes.model_copy(update=changed)
            updates["attributes"] = attributes
            stored = stored.model_copy(update=updates)
            self._save_version(stored)
        return Response.json(self._bundle(stored, base))
