"""Proofs that an AWS KMS key holds keyplan's material (`keyplan verify`).

- RSA and EC keys: GetPublicKey equals the source's public key; then, for SIGN_VERIFY keys, a
  Sign of the run's fresh challenge verifies under the source's public key and KMS's Verify
  accepts the source's signature of another challenge (both directions), and for
  ENCRYPT_DECRYPT keys, KMS decrypts the challenge encrypted to the source's public key.
- HMAC keys: GenerateMac of the challenge equals the source's HMAC of it.
- Symmetric keys: KMS ciphertext blobs are an undocumented format, so the proof is the one AWS
  documents for imported material: ImportKeyMaterial with ImportType EXISTING_KEY_MATERIAL
  (for the version's KeyMaterialId) succeeds only when the bytes are the ones the key already
  holds, and fails with IncorrectKeyMaterialException otherwise. The re-import keeps the
  material's expiry, so the key is left as it was; material the key no longer holds (expired,
  deleted) is not re-imported, since that would restore it.

Disabled keys, keys pending deletion and operations the key usage forbids are answered by KMS
with an error, which becomes a "cannot prove" verdict with KMS's reason.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from keyplan.algorithms import KeyUsage, MaterialKind
from keyplan.crypto.proofs import SignatureScheme, signature_verifies
from keyplan.provider import (
    ImportParametersRequest,
    ImportPurpose,
    MaterialProof,
    MaterialProofRequest,
    MaterialWitness,
    ProofMethod,
    ProviderError,
    SourceError,
    Verdict,
    VersionState,
    WrappedMaterial,
)
from keyplan.proving import compare_public_keys, decrypts_challenge, unless_refused, verdict
from keyplan.transfer import import_material

if TYPE_CHECKING:
    from providers.aws.provider import AwsKmsProvider

INCORRECT_MATERIAL = "IncorrectKeyMaterialException"
INVALID_SIGNATURE = "KMSInvalidSignatureException"
EQUAL_KEYS = "GetPublicKey equals the source's public key"
_MATERIAL_ID = re.compile(r"[0-9a-f]{64}")
_EC_SIGNING = {
    "P-256": ("ECDSA_SHA_256", SignatureScheme.ECDSA_SHA256),
    "P-384": ("ECDSA_SHA_384", SignatureScheme.ECDSA_SHA384),
}


def prove(provider: AwsKmsProvider, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
    kind = request.key.algorithm.kind
    if kind in (MaterialKind.RSA, MaterialKind.EC):
        return _prove_asymmetric(provider, request, witness)
    if kind is MaterialKind.HMAC:
        return _prove_mac(provider, request, witness)
    return _prove_by_reimport(provider, request, witness)


def _prove_asymmetric(provider: AwsKmsProvider, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
    remote_id = request.remote_id
    answer = provider._kms.call("GetPublicKey", remote_id, KeyId=remote_id)
    source_spki = witness.public_key()
    different = compare_public_keys(
        lambda: bytes(answer["PublicKey"]),
        source_spki,
        unreadable="GetPublicKey answered no readable public key",
        differs="the key's public key (GetPublicKey) differs from the source's",
    )
    if different is not None:
        return different
    usage = str(answer.get("KeyUsage"))
    if usage == "SIGN_VERIFY":
        return unless_refused(lambda: _prove_signature(provider, request, witness, source_spki), EQUAL_KEYS, "a use of the key")
    if usage == "ENCRYPT_DECRYPT" and request.key.usage is KeyUsage.DECRYPT:
        return unless_refused(lambda: _prove_decryption(provider, request, source_spki), EQUAL_KEYS, "a use of the key")
    return verdict(Verdict.PROVEN, ProofMethod.PUBLIC_KEY, EQUAL_KEYS)


def _prove_signature(
    provider: AwsKmsProvider, request: MaterialProofRequest, witness: MaterialWitness, source_spki: bytes
) -> MaterialProof:
    """The key signs the challenge as the source's private key would."""
    remote_id, curve = request.remote_id, request.key.algorithm.curve
    signing, scheme = _EC_SIGNING[curve] if curve else ("RSASSA_PSS_SHA_256", SignatureScheme.RSA_PSS_SHA256)
    signed = provider._kms.call(
        "Sign", remote_id, KeyId=remote_id, Message=request.challenge, MessageType="RAW", SigningAlgorithm=signing
    )
    if not signature_verifies(source_spki, scheme, request.challenge, bytes(signed["Signature"])):
        return verdict(
            Verdict.MISMATCH,
            ProofMethod.SIGNATURE,
            f"the public keys match but the key's {signing} signature of a fresh challenge does not verify under it",
        )
    return _verify_source_signature(provider, request, witness, signing, scheme)


def _prove_decryption(provider: AwsKmsProvider, request: MaterialProofRequest, source_spki: bytes) -> MaterialProof:
    def decrypt(sealed: bytes) -> bytes:
        remote_id = request.remote_id
        opened = provider._kms.call(
            "Decrypt", remote_id, KeyId=remote_id, CiphertextBlob=sealed, EncryptionAlgorithm="RSAES_OAEP_SHA_256"
        )
        return bytes(opened["Plaintext"])

    return decrypts_challenge(
        decrypt,
        source_spki,
        request.challenge,
        holder="the key",
        proven=f"{EQUAL_KEYS}, and the key decrypted a fresh challenge encrypted to it (RSAES_OAEP_SHA_256)",
    )


def _verify_source_signature(
    provider: AwsKmsProvider, request: MaterialProofRequest, witness: MaterialWitness, signing: str, scheme: SignatureScheme
) -> MaterialProof:
    """The reverse direction: the source signs another fresh challenge and KMS verifies it (Verify,
    inside KMS, with the key's public half)."""
    forward = (
        f"{EQUAL_KEYS}, and a {signing} signature of a fresh challenge verifies "
        "under it"
    )
    other = request.challenge[::-1]
    try:
        ours = witness.sign(other, scheme)
    except SourceError as error:
        return verdict(Verdict.PROVEN, ProofMethod.SIGNATURE, f"{forward} (the source could not sign: {error.summary})")
    try:
        provider._kms.call(
            "Verify",
            request.remote_id,
            KeyId=request.remote_id,
            Message=other,
            MessageType="RAW",
            Signature=ours,
            SigningAlgorithm=signing,
        )
    except ProviderError as error:
        if error.code != INVALID_SIGNATURE:
            raise
        return verdict(
            Verdict.MISMATCH,
            ProofMethod.SIGNATURE,
            f"the key's signature verified under the source's public key, but KMS refused the source's {signing} "
            f"signature ({INVALID_SIGNATURE})",
        )
    return verdict(
        Verdict.PROVEN, ProofMethod.SIGNATURE, f"{forward}, and KMS verified (Verify) the source's signature of another"
    )


def _prove_mac(provider: AwsKmsProvider, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
    algorithm = "HMAC_SHA_" + request.key.algorithm.name.removeprefix("HMAC_SHA")
    answer = provider._kms.call(
        "GenerateMac", request.remote_id, KeyId=request.remote_id, Message=request.challenge, MacAlgorithm=algorithm
    )
    if bytes(answer["Mac"]) != witness.mac(request.challenge):
        return verdict(
            Verdict.MISMATCH, ProofMethod.MAC, f"the key's {algorithm} of a fresh challenge differs from the source's"
        )
    return verdict(Verdict.PROVEN, ProofMethod.MAC, f"the key's {algorithm} of a fresh challenge equals the source's")


def _prove_by_reimport(provider: AwsKmsProvider, request: MaterialProofRequest, witness: MaterialWitness) -> MaterialProof:
    remote_id = request.remote_id
    # one read: ListKeyRotations names every material with its state, the current one marked
    versions = provider.material_versions(remote_id)
    version_id = request.remote_version_id if _MATERIAL_ID.fullmatch(request.remote_version_id or "") else None
    version = next((v for v in versions if (v.version_id == version_id if version_id else v.current)), None)
    if version is None or version.state not in (VersionState.ENABLED, VersionState.PENDING_ROTATION):
        held = version.state.value.replace("_", " ") if version else "not listed"
        return verdict(
            Verdict.CANNOT_PROVE,
            ProofMethod.REIMPORT,
            f"the key does not hold this material now ({held}); re-importing it would restore it, which verify does "
            "not do (keyplan apply does)",
        )
    if request.offer is None:
        return verdict(
            Verdict.CANNOT_PROVE, ProofMethod.REIMPORT, "the key source cannot send this material to AWS KMS"
        )
    offer = request.offer
    valid_to = request.valid_to if request.valid_to is not None else version.expires_at
    try:
        response = import_material(
            provider,
            ImportParametersRequest(remote_id=remote_id, key=request.key, offer=offer),
            lambda parameters: WrappedMaterial(
                method=parameters.method, blob=witness.wrap(parameters.method, parameters.wrapping_public_key)
            ),
            address=request.address,
            managed_by=request.managed_by,
            purpose=ImportPurpose.REIMPORT,
            reimport_version_id=version.version_id,
            # the expiry asked for (`keyplan import` sets the configured one), else the one it has
            valid_to=valid_to,
        )
    except ProviderError as error:
        if error.code == INCORRECT_MATERIAL:
            return verdict(
                Verdict.MISMATCH,
                ProofMethod.REIMPORT,
                f"AWS KMS refused this material as the key's material {_short(version.version_id)} "
                f"({INCORRECT_MATERIAL}): the key holds other material",
                version.version_id,
            )
        raise
    proven = verdict(
        Verdict.PROVEN,
        ProofMethod.REIMPORT,
        f"AWS KMS accepted this material again as the key's material {_short(version.version_id)} "
        "(EXISTING_KEY_MATERIAL); it accepts only the identical bytes",
        version.version_id,
    )
    return proven.model_copy(update={"expires_at": response.expires_at or valid_to})


def _short(version_id: str) -> str:
    return version_id[:12] + "…" if len(version_id) > 16 else version_id

