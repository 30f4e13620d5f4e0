"""Steps the providers' proofs of possession (`prove_material`) share: a verdict, a remote public
key compared with the source's, a use of the key the service may refuse, a challenge the service
decrypts, and AES-GCM in both directions. Each provider says which of its operations a step calls
and how the verdict names it; nothing here names a service.

What a service refuses because of the key's state (disabled, destroyed, pending deletion:
`ErrorKind.CONFLICT`), like what could not be tried at all (credentials, reachability, retries
used up), is raised: the verification engine reports it as "cannot prove". Any other refusal of a
use means what the step says it means."""

from __future__ import annotations

import os
from collections.abc import Callable

from keyplan.crypto.proofs import oaep_encrypt, same_public_key
from keyplan.provider import ErrorKind, MaterialProof, MaterialWitness, ProofMethod, ProviderError, Verdict

AAD = b"keyplan verify"  # additional authenticated data of the AES-GCM challenges
GCM_IV_LENGTH = 12


def verdict(outcome: Verdict, method: ProofMethod, detail: str, version: str | None = None) -> MaterialProof:
    return MaterialProof(verdict=outcome, method=method, detail=detail, remote_version_id=version)


def refused(error: ProviderError) -> bool:
    """Whether the service refused this use of the key (rather than the key's state changing or
    the call not being made)."""
    return not error.retryable and error.kind not in (ErrorKind.AUTH, ErrorKind.UNREACHABLE, ErrorKind.CONFLICT)


def compare_public_keys(
    remote_public_key: Callable[[], bytes], source_spki: bytes, *, unreadable: str, differs: str
) -> MaterialProof | None:
    """None when the remote public key (DER or PEM) is the source's; else the verdict that it is
    unreadable (cannot prove) or another key (mismatch)."""
    try:
        same = same_public_key(remote_public_key(), source_spki)
    except ValueError:
        return verdict(Verdict.CANNOT_PROVE, ProofMethod.PUBLIC_KEY, unreadable)
    return None if same else verdict(Verdict.MISMATCH, ProofMethod.PUBLIC_KEY, differs)


def unless_refused(use: Callable[[], MaterialProof], equal_keys: str, what: str) -> MaterialProof:
    """A proof by a use of the key beyond equal public keys; when the service refuses that use,
    the equal public keys (`equal_keys` says how they were compared) are the proof."""
    try:
        return use()
    except ProviderError as error:
        if not refused(error):
            raise
        return verdict(Verdict.PROVEN, ProofMethod.PUBLIC_KEY, f"{equal_keys} ({what} was refused: {error.summary})")


def decrypts_challenge(
    decrypt: Callable[[bytes], bytes], source_spki: bytes, challenge: bytes, *, holder: str, proven: str
) -> MaterialProof:
    """The remote key decrypts the challenge encrypted (RSA-OAEP, SHA-256) to the source's public
    key: only the matching private key can."""
    if decrypt(oaep_encrypt(source_spki, challenge, "SHA-256")) != challenge:
        return verdict(
            Verdict.MISMATCH,
            ProofMethod.ENCRYPTION,
            f"the public keys match but {holder} did not decrypt a challenge encrypted to the source's public key",
        )
    return verdict(Verdict.PROVEN, ProofMethod.ENCRYPTION, proven)


def aes_gcm_both_ways(
    witness: MaterialWitness,
    challenge: bytes,
    encrypt: Callable[[bytes], tuple[bytes, bytes]],
    decrypt: Callable[[bytes, bytes, bytes], bytes],
    *,
    encryption: str,
    decryption: str,
) -> MaterialProof:
    """AES-GCM ciphertexts are standard: the source, encrypting the challenge under the IV the
    service chose, gets the same bytes only with the same key. Then the reverse: the service opens
    what the source encrypted under a fresh IV of its own.

    `encrypt(plaintext)` answers the service's IV and ciphertext with the tag appended;
    `decrypt(iv, ciphertext, tag)` the service's plaintext; both with `AAD`."""
    iv, sealed = encrypt(challenge)
    ciphertext, tag = witness.aes_gcm_encrypt(iv, challenge, AAD)
    if ciphertext + tag != sealed:
        return verdict(
            Verdict.MISMATCH,
            ProofMethod.ENCRYPTION,
            f"the version's {encryption} of a fresh challenge differs from the source's under the same IV",
        )
    iv, other = os.urandom(GCM_IV_LENGTH), challenge[::-1]
    ours, our_tag = witness.aes_gcm_encrypt(iv, other, AAD)
    try:
        opened = decrypt(iv, ours, our_tag)
    except ProviderError as error:
        if not refused(error):
            raise
        return verdict(
            Verdict.MISMATCH,
            ProofMethod.ENCRYPTION,
            f"the version's ciphertext matched, but it refused what the source encrypted ({error.summary})",
        )
    if opened != other:
        return verdict(
            Verdict.MISMATCH, ProofMethod.ENCRYPTION, "the version decrypted the source's ciphertext to other bytes"
        )
    return verdict(
        Verdict.PROVEN,
        ProofMethod.ENCRYPTION,
        f"the version's {encryption} of a fresh challenge equals the source's under the same IV, and it decrypted"
        f"{decryption} the source's encryption of another under a fresh IV",
    )
