"""Proofs that a Cloud KMS key version holds keyplan's material (`keyplan verify`). Versions are
addressable, so every version keyplan imported is proven on its own.

- RSA and EC versions: GetPublicKey equals the source's public key; for ASYMMETRIC_SIGN keys,
  AsymmetricSign of the digest of the run's fresh challenge then verifies under the source's
  public key; for ASYMMETRIC_DECRYPT keys, AsymmetricDecrypt opens the challenge encrypted
  (RSA-OAEP-SHA256) to the source's public key. Cloud KMS has no verify operation for
  asymmetric keys, so a signature made by the source is not checked there.
- HMAC versions: MacSign of the challenge equals the source's HMAC of it.
- AES raw encryption versions (AES_256_GCM, `symmetric_algorithm = "AES_256_GCM"`): RawEncrypt
  of the challenge equals the source's AES-GCM encryption of it under the IV Cloud KMS chose
  (ciphertext and tag), and RawDecrypt opens what the source encrypted under a fresh IV.
- AES GOOGLE_SYMMETRIC_ENCRYPTION versions (the default): Google does not document their
  ciphertext format, and Cloud KMS imports material into a version only once (re-import is only
  for destroyed versions), so there is no proof for them: "cannot prove" by design, with that
  reason and the advice to use raw encryption keys.

A version that is disabled or destroyed is answered with FAILED_PRECONDITION, which becomes a
"cannot prove" verdict with Cloud KMS's reason.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from keyplan.algorithms import MaterialKind
from keyplan.crypto.proofs import SignatureScheme, signature_verifies
from keyplan.provider import (
    DescribeKeyRequest,
    ErrorKind,
    MaterialProof,
    MaterialProofRequest,
    MaterialWitness,
    ProofMethod,
    ProviderError,
    Verdict,
)
from keyplan.proving import AAD, aes_gcm_both_ways, compare_public_keys, decrypts_challenge, unless_refused, verdict
from providers.gcp.errors import service_message
from providers.gcp.mapping import RAW_AES_GCM, gcp_key_type

if TYPE_CHECKING:
    from providers.gcp.provider import GcpProvider

EQUAL_KEYS = "GetPublicKey equals the source's public key"


def prove(provider: GcpProvider, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
    try:
        return _prove(provider, request, witness)
    except ProviderError as error:
        if error.kind is not ErrorKind.CONFLICT:
            raise
        # FAILED_PRECONDITION: a version disabled, scheduled for destruction or destroyed
        return verdict(
            Verdict.CANNOT_PROVE,
            ProofMethod.NONE,
            f"Cloud KMS refused ({error.code}): {service_message(error.__cause__) or error.summary}",
            request.remote_version_id,
        )


def _prove(provider: GcpProvider, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
    version_id = request.remote_version_id or _current_version(provider, request.remote_id)
    if version_id is None:
        return verdict(Verdict.CANNOT_PROVE, ProofMethod.NONE, "the key has no version holding material")
    name = f"{request.remote_id}/cryptoKeyVersions/{version_id}"
    kind = request.key.algorithm.kind
    if kind in (MaterialKind.RSA, MaterialKind.EC):
        proof = _prove_asymmetric(provider, request, witness, name)
    elif kind is MaterialKind.HMAC:
        proof = _prove_mac(provider, request, witness, name)
    else:
        proof = _prove_aes(provider, request, witness, name)
    return proof.model_copy(update={"remote_version_id": version_id})


def _prove_aes(provider: GcpProvider, request: MaterialProofRequest, witness: MaterialWitness, name: str) -> MaterialProof:
    version = provider._kms.call(
        "read the version", provider._client.get_crypto_key_version, request.remote_id, name=name
    )
    algorithm = version.algorithm.name
    if algorithm == RAW_AES_GCM:
        return _prove_raw_aes_gcm(provider, request, witness, name)
    return MaterialProof(
        verdict=Verdict.CANNOT_PROVE,
        method=ProofMethod.NONE,
        detail=f"the version is {algorithm}: Cloud KMS does not document its ciphertext format and takes material "
        "into a version only once, so no operation shows which AES material it holds. To have AES keys proven, "
        'create them as raw encryption keys (symmetric_algorithm = "AES_256_GCM" in the provider block)',
        by_design=True,
    )


def _prove_raw_aes_gcm(
    provider: GcpProvider, request: MaterialProofRequest, witness: MaterialWitness, name: str
) -> MaterialProof:
    """RawEncrypt's AES-GCM ciphertext is standard (the tag appended), so the source can compare
    it; RawDecrypt opens the source's."""
    client = provider._client

    def encrypt(plaintext: bytes) -> tuple[bytes, bytes]:
        sealed = provider._kms.call(
            "encrypt with the raw key",
            client.raw_encrypt,
            request.remote_id,
            request={"name": name, "plaintext": plaintext, "additional_authenticated_data": AAD},
        )
        return bytes(sealed.initialization_vector), bytes(sealed.ciphertext)

    def decrypt(iv: bytes, ciphertext: bytes, tag: bytes) -> bytes:
        opened = provider._kms.call(
            "decrypt with the raw key",
            client.raw_decrypt,
            request.remote_id,
            request={
                "name": name,
                "ciphertext": ciphertext + tag,
                "additional_authenticated_data": AAD,
                "initialization_vector": iv,
                "tag_length": len(tag),
            },
        )
        return bytes(opened.plaintext)

    return aes_gcm_both_ways(
        witness,
        request.challenge,
        encrypt,
        decrypt,
        encryption="AES-256-GCM encryption (RawEncrypt)",
        decryption=" (RawDecrypt)",
    )


def _current_version(provider: GcpProvider, remote_id: str) -> str | None:
    live = provider.describe(DescribeKeyRequest(remote_id=remote_id)).key
    return live.current_version if live is not None else None


def _prove_asymmetric(
    provider: GcpProvider, request: MaterialProofRequest, witness: MaterialWitness, name: str
) -> MaterialProof:
    client = provider._client
    answer = provider._kms.call("read the public key", client.get_public_key, request.remote_id, request={"name": name})
    source_spki = witness.public_key()
    different = compare_public_keys(
        lambda: answer.pem.encode(),
        source_spki,
        unreadable="GetPublicKey answered no readable public key",
        differs="the version's public key (GetPublicKey) differs from the source's",
    )
    if different is not None:
        return different
    key_type = gcp_key_type(request.key.algorithm, request.key.usage)
    purpose, algorithm = (key_type.purpose, key_type.algorithm) if key_type is not None else (None, "")
    if purpose == "ASYMMETRIC_DECRYPT":
        return unless_refused(
            lambda: _prove_decryption(provider, request, source_spki, name, algorithm), EQUAL_KEYS, "decrypting"
        )
    if purpose == "ASYMMETRIC_SIGN":
        return unless_refused(
            lambda: _prove_signature(provider, request, source_spki, name, algorithm), EQUAL_KEYS, "signing"
        )
    return verdict(Verdict.PROVEN, ProofMethod.PUBLIC_KEY, EQUAL_KEYS)


def _prove_signature(
    provider: GcpProvider, request: MaterialProofRequest, source_spki: bytes, name: str, algorithm: str
) -> MaterialProof:
    scheme, digest_name = _signing(request)
    digest = hashlib.new(digest_name, request.challenge).digest()
    signed = provider._kms.call(
        "sign", provider._client.asymmetric_sign, request.remote_id, request={"name": name, "digest": {digest_name: digest}}
    )
    if not signature_verifies(source_spki, scheme, digest, bytes(signed.signature), prehashed=True):
        return verdict(
            Verdict.MISMATCH,
            ProofMethod.SIGNATURE,
            f"the public keys match but the version's {algorithm} signature of a fresh challenge does not verify "
            "under it",
        )
    return verdict(
        Verdict.PROVEN,
        ProofMethod.SIGNATURE,
        f"{EQUAL_KEYS}, and an AsymmetricSign ({algorithm}) of a fresh challenge verifies under it",
    )


def _prove_decryption(
    provider: GcpProvider, request: MaterialProofRequest, source_spki: bytes, name: str, algorithm: str
) -> MaterialProof:
    def decrypt(sealed: bytes) -> bytes:
        opened = provider._kms.call(
            "decrypt", provider._client.asymmetric_decrypt, request.remote_id, request={"name": name, "ciphertext": sealed}
        )
        return bytes(opened.plaintext)

    return decrypts_challenge(
        decrypt,
        source_spki,
        request.challenge,
        holder="the version",
        proven=f"{EQUAL_KEYS}, and the version decrypted (AsymmetricDecrypt, {algorithm}) a fresh challenge encrypted "
        "to it",
    )


def _signing(request: MaterialProofRequest) -> tuple[SignatureScheme, str]:
    if request.key.algorithm.curve == "P-384":
        return SignatureScheme.ECDSA_SHA384, "sha384"
    if request.key.algorithm.kind is MaterialKind.EC:
        return SignatureScheme.ECDSA_SHA256, "sha256"
    return SignatureScheme.RSA_PSS_SHA256, "sha256"


def _prove_mac(provider: GcpProvider, request: MaterialProofRequest, witness: MaterialWitness, name: str) -> MaterialProof:
    answer = provider._kms.call(
        "compute a MAC", provider._client.mac_sign, request.remote_id, request={"name": name, "data": request.challenge}
    )
    algorithm = request.key.algorithm.name
    if bytes(answer.mac) != witness.mac(request.challenge):
        return verdict(Verdict.MISMATCH, ProofMethod.MAC, f"the version's {algorithm} (MacSign) of a fresh challenge differs from the source's")
    return verdict(Verdict.PROVEN, ProofMethod.MAC, f"the version's {algorithm} (MacSign) of a fresh challenge equals the source's")
