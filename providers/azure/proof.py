"""Proofs that a Key Vault or Managed HSM key version holds keyplan's material (`keyplan
verify`). Every import makes a version, and versions are addressable, so each version keyplan
imported is proven on its own.

- RSA and EC versions: the public members of the version's JSON Web Key (n, e / crv, x, y)
  equal the source's public key; then, for keys with `sign`, a PS256 / ES256 / ES384 signature
  of the digest of the run's fresh challenge verifies under the source's public key, and for
  keys with `decrypt`, the version decrypts (RSA-OAEP-256) the challenge encrypted to it.
- AES (oct-HSM, Managed HSM): AES-GCM is documented (JWA A256GCM: the HSM picks the IV and
  returns IV and tag), so the version encrypts the challenge and the source encrypts it under
  the same IV: the ciphertexts and tags are equal only for the same key. Then the reverse: the
  version decrypts what the source encrypted under a fresh IV. A key whose key_ops were narrowed
  to wrapKey/unwrapKey (a key-encryption key) is proven with AES key wrap instead (JWA A256KW,
  RFC 3394, deterministic): the version's wrap of the challenge equals the source's, and it
  unwraps the source's wrap of another. The verdict's method says which was used.

Disabled or expired versions and operations outside the key's `key_ops` are refused with 403,
which becomes a "cannot prove" verdict with the vault's reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from keyplan.algorithms import MaterialKind
from keyplan.crypto.proofs import SignatureScheme, signature_verifies
from keyplan.provider import (
    MaterialProof,
    MaterialProofRequest,
    MaterialWitness,
    ProofMethod,
    ProviderError,
    Verdict,
)
from keyplan.proving import (
    AAD,
    aes_gcm_both_ways,
    compare_public_keys,
    decrypts_challenge,
    refused,
    unless_refused,
    verdict,
)

if TYPE_CHECKING:
    from providers.azure.provider import AzureProvider

EQUAL_KEYS = "the version's JWK equals the source's public key"
_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}


def prove(provider: AzureProvider, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
    name = provider._name_of(request.remote_id)
    version = request.remote_version_id or None
    key = provider._call(
        f"reading key {name}", lambda: provider._client.get_key(name, version), remote_id=request.remote_id
    )
    crypto = provider._client.get_cryptography_client(name, key_version=key.properties.version)
    operations = set(key.key_operations or ())
    if request.key.algorithm.kind is MaterialKind.SYMMETRIC:
        proof = _prove_aes(provider, request, witness, crypto, operations)
    else:
        proof = _prove_asymmetric(provider, request, witness, key.key, crypto, operations)
    return proof.model_copy(update={"remote_version_id": key.properties.version})


def jwk_spki(jwk: Any) -> bytes:
    """DER SubjectPublicKeyInfo of the public members of an RSA or EC JSON Web Key."""
    public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    if jwk.n:
        public = rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()
    else:
        curve = _CURVES.get(str(getattr(jwk.crv, "value", jwk.crv)))
        if curve is None or not jwk.x or not jwk.y:
            raise ValueError("not an RSA or P-256/P-384 key")
        public = ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"), curve).public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _prove_asymmetric(
    provider: AzureProvider,
    request: MaterialProofRequest,
    witness: MaterialWitness,
    jwk: Any,
    crypto: Any,
    operations: set[str],
) -> MaterialProof:
    source_spki = witness.public_key()
    different = compare_public_keys(
        lambda: jwk_spki(jwk),
        source_spki,
        unreadable="the key's JSON Web Key holds no readable public key",
        differs="the version's public key (its JWK) differs from the source's",
    )
    if different is not None:
        return different
    if "sign" in operations:
        return unless_refused(lambda: _prove_signature(provider, request, source_spki, crypto), EQUAL_KEYS, "a use")
    if "decrypt" in operations and request.key.algorithm.kind is MaterialKind.RSA:
        return unless_refused(lambda: _prove_decryption(provider, request, source_spki, crypto), EQUAL_KEYS, "a use")
    return verdict(Verdict.PROVEN, ProofMethod.PUBLIC_KEY, EQUAL_KEYS)


def _prove_signature(
    provider: AzureProvider, request: MaterialProofRequest, source_spki: bytes, crypto: Any
) -> MaterialProof:
    from azure.keyvault.keys.crypto import SignatureAlgorithm

    curve = request.key.algorithm.curve
    scheme, algorithm, digest_algorithm = (
        (SignatureScheme.ECDSA_SHA384, SignatureAlgorithm.es384, hashes.SHA384())
        if curve == "P-384"
        else (SignatureScheme.ECDSA_SHA256, SignatureAlgorithm.es256, hashes.SHA256())
        if curve
        else (SignatureScheme.RSA_PSS_SHA256, SignatureAlgorithm.ps256, hashes.SHA256())
    )
    hasher = hashes.Hash(digest_algorithm)
    hasher.update(request.challenge)
    digest = hasher.finalize()
    signed = provider._call("signing", lambda: crypto.sign(algorithm, digest), remote_id=request.remote_id)
    if not _ecdsa_or_pss_verifies(source_spki, scheme, digest, bytes(signed.signature)):
        return verdict(
            Verdict.MISMATCH,
            ProofMethod.SIGNATURE,
            f"the public keys match but the version's {algorithm.value} signature of a fresh challenge does "
            "not verify under it",
        )
    return verdict(
        Verdict.PROVEN,
        ProofMethod.SIGNATURE,
        f"{EQUAL_KEYS}, and its {algorithm.value} signature of a fresh challenge verifies under it",
    )


def _prove_decryption(
    provider: AzureProvider, request: MaterialProofRequest, source_spki: bytes, crypto: Any
) -> MaterialProof:
    from azure.keyvault.keys.crypto import EncryptionAlgorithm

    def decrypt(sealed: bytes) -> bytes:
        opened = provider._call(
            "decrypting", lambda: crypto.decrypt(EncryptionAlgorithm.rsa_oaep_256, sealed), remote_id=request.remote_id
        )
        return bytes(opened.plaintext)

    return decrypts_challenge(
        decrypt,
        source_spki,
        request.challenge,
        holder="the version",
        proven=f"{EQUAL_KEYS}, and it decrypted a fresh challenge encrypted to it (RSA-OAEP-256)",
    )


def _ecdsa_or_pss_verifies(spki: bytes, scheme: SignatureScheme, digest: bytes, signature: bytes) -> bool:
    """JWA ES256/ES384 signatures are r || s (fixed length), not DER."""
    if scheme.value.startswith("ecdsa"):
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        half = len(signature) // 2
        signature = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
    return signature_verifies(spki, scheme, digest, signature, prehashed=True)


def _prove_aes(
    provider: AzureProvider, request: MaterialProofRequest, witness: MaterialWitness, crypto: Any, operations: set[str]
) -> MaterialProof:
    from azure.keyvault.keys.crypto import EncryptionAlgorithm

    if not {"encrypt", "decrypt"} <= operations:
        if operations & {"wrapKey", "unwrapKey"}:
            return _prove_aes_key_wrap(provider, request, witness, crypto, operations)
        return verdict(
            Verdict.CANNOT_PROVE,
            ProofMethod.ENCRYPTION,
            f"the key's key_ops ({', '.join(sorted(operations)) or 'none'}) allow neither encrypt and decrypt nor "
            "wrapKey or unwrapKey",
        )
    remote_id, algorithm = request.remote_id, EncryptionAlgorithm.a256_gcm

    def encrypt(plaintext: bytes) -> tuple[bytes, bytes]:
        sealed = provider._call(
            "encrypting",
            lambda: crypto.encrypt(algorithm, plaintext, additional_authenticated_data=AAD),
            remote_id=remote_id,
        )
        return bytes(sealed.iv or b""), bytes(sealed.ciphertext) + bytes(sealed.tag or b"")

    def decrypt(iv: bytes, ciphertext: bytes, tag: bytes) -> bytes:
        opened = provider._call(
            "decrypting",
            lambda: crypto.decrypt(algorithm, ciphertext, iv=iv, authentication_tag=tag, additional_authenticated_data=AAD),
            remote_id=remote_id,
        )
        return bytes(opened.plaintext)

    return aes_gcm_both_ways(witness, request.challenge, encrypt, decrypt, encryption="A256GCM encryption", decryption="")


def _prove_aes_key_wrap(
    provider: AzureProvider, request: MaterialProofRequest, witness: MaterialWitness, crypto: Any, operations: set[str]
) -> MaterialProof:
    """For keys whose key_ops allow key wrapping only: A256KW (RFC 3394) is deterministic, so the
    version's wrapKey of the fresh challenge equals the source's wrap of it only under the same
    key; and the version's unwrapKey opens the source's wrap of another challenge (its integrity
    check fails under any other key). Either direction alone is a proof; both run when allowed."""
    from azure.keyvault.keys.crypto import KeyWrapAlgorithm

    # CKM_AES_KEY_WRAP is Managed HSM's name for RFC 3394, the same bytes as A256KW for a 256-bit
    # key. It is used because azure-keyvault-keys performs A*KW wrapKey locally when it has read an
    # oct key, with a random key in place of the HSM's (it never sees `k`); CKM_AES_KEY_WRAP always
    # goes to the HSM.
    remote_id, algorithm = request.remote_id, KeyWrapAlgorithm.ckm_aes_key_wrap
    done = []
    if "wrapKey" in operations:
        wrapped = provider._call("wrapping", lambda: crypto.wrap_key(algorithm, request.challenge), remote_id=remote_id)
        if bytes(wrapped.encrypted_key) != witness.aes_key_wrap(request.challenge):
            return verdict(
                Verdict.MISMATCH,
                ProofMethod.KEY_WRAP,
                "the version's AES key wrap (wrapKey, CKM_AES_KEY_WRAP) of a fresh challenge differs from the source's",
            )
        done.append("its AES key wrap (wrapKey, CKM_AES_KEY_WRAP = A256KW) of a fresh challenge equals the source's")
    if "unwrapKey" in operations:
        other = request.challenge[::-1]
        ours = witness.aes_key_wrap(other)
        try:
            opened = provider._call("unwrapping", lambda: crypto.unwrap_key(algorithm, ours), remote_id=remote_id)
        except ProviderError as error:
            if not refused(error):
                raise  # a key disabled meanwhile is "cannot prove", not a mismatch
            return verdict(
                Verdict.MISMATCH,
                ProofMethod.KEY_WRAP,
                f"the version refused to unwrap (unwrapKey) what the source wrapped with AES key wrap ({error.summary})",
            )
        if bytes(opened.key) != other:
            return verdict(
                Verdict.MISMATCH, ProofMethod.KEY_WRAP, "the version unwrapped the source's AES key wrap to other bytes"
            )
        done.append("it unwrapped (unwrapKey) the source's AES key wrap of another")
    return verdict(
        Verdict.PROVEN,
        ProofMethod.KEY_WRAP,
        "the key's key_ops allow key wrapping only, so AES key wrap was used: " + ", and ".join(done),
    )
