"""AES key wrap (RFC 3394) computed inside a token, for `keyplan verify`'s key-wrap proofs.

A token that offers CKM_AES_KEY_WRAP to C_Encrypt does it in one call. SoftHSM2, and other
tokens, offer that mechanism to C_WrapKey only, which needs CKA_WRAP on the key; keyplan creates
AES keys with CKA_ENCRYPT alone (for fingerprints and AES-GCM proofs) and never adds attributes to
a key in a token. RFC 3394 is defined over the AES block function, so those tokens compute it
with single-block CKM_AES_ECB encryptions instead: the key never leaves the token, and the
result is checked in the conformance suite against `cryptography`'s aes_key_wrap."""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_IV = bytes.fromhex("A6A6A6A6A6A6A6A6")  # RFC 3394 §2.2.3.1


def key_wrap_from_blocks(encrypt_block: Callable[[bytes], bytes], plaintext: bytes) -> bytes:
    """RFC 3394 §2.2.1 (index-based form) with `encrypt_block` as AES(K, ·) on one 16-byte block."""
    if len(plaintext) < 16 or len(plaintext) % 8:
        raise ValueError("AES key wrap takes at least 16 bytes, a multiple of 8")
    registers = [plaintext[i : i + 8] for i in range(0, len(plaintext), 8)]
    check = DEFAULT_IV
    n = len(registers)
    for j in range(6):
        for i in range(n):
            block = encrypt_block(check + registers[i])
            counter = n * j + i + 1
            check = (int.from_bytes(block[:8], "big") ^ counter).to_bytes(8, "big")
            registers[i] = block[8:]
    return check + b"".join(registers)
