"""Fingerprints identify material without giving anything usable against it: an AES key's
check value is not the encryption of the zero block (GCM's hash subkey H, which with one valid
GCM ciphertext lets anyone forge others), and an HMAC key's is not a full tag."""

from __future__ import annotations

import hashlib
import hmac
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keyplan.algorithms import MaterialKind
from keyplan.crypto import SecretBytes, fingerprint_material
from keyplan.crypto.fingerprint import FINGERPRINT_MESSAGE, is_current_fingerprint
from keyplan.state import JournalEntry, LocalBackend
from keyplan.state.model import KeyRecord, MaterialVersion, State


def _aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def test_aes_check_value_is_the_x9_24_kcv_and_reveals_no_part_of_the_gcm_hash_subkey() -> None:
    for _ in range(20):
        key = os.urandom(32)
        fingerprint = fingerprint_material(MaterialKind.SYMMETRIC, SecretBytes(key))
        hash_subkey = _aes_block(key, bytes(16)).hex()
        kind, _, value = fingerprint.partition(":")
        assert kind == "aeskcv"
        assert value == _aes_block(key, b"\x01" * 16)[:5].hex(), "leftmost 40 bits of E_K(01..01)"
        assert all(hash_subkey[i : i + 6] not in fingerprint for i in range(0, 27, 2))


def test_hmac_check_value_is_a_truncated_mac_never_a_whole_tag() -> None:
    key = os.urandom(32)
    fingerprint = fingerprint_material(MaterialKind.HMAC, SecretBytes(key))
    tag = hmac.new(key, FINGERPRINT_MESSAGE, hashlib.sha256).digest()
    assert fingerprint == "hmackcv:" + tag[:5].hex()
    assert tag.hex() not in fingerprint


def test_old_definitions_are_not_current() -> None:
    key = os.urandom(32)
    assert not is_current_fingerprint("kcv:" + _aes_block(key, bytes(16)).hex())
    assert not is_current_fingerprint("hmac:" + "00" * 32)
    assert is_current_fingerprint(fingerprint_material(MaterialKind.SYMMETRIC, SecretBytes(key)))
    assert is_current_fingerprint("spki:" + "00" * 32)


def test_a_journal_left_by_an_older_keyplan_brings_no_old_fingerprint_back(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path / "keyplan.kpstate.json").store()
    state = State(lineage="l", serial=1)
    backend.write_current(state)
    old = MaterialVersion(version=1, handle="h", fingerprint="kcv:" + "ab" * 16, created_at=datetime.now(UTC))
    record = KeyRecord(address="key.k", algorithm="AES_256", usage="encrypt", source="software.s", materials=[old])
    backend.append_journal([JournalEntry(serial=2, lineage="l", keys={"key.k": record})])
    read = backend.read()
    assert read is not None and read.keys["key.k"].materials[0].fingerprint is None
