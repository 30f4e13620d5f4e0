"""PKCS#11 mechanisms keyplan uses for wrapping, with their parameters.

`CKM_RSA_AES_KEY_WRAP` (0x1054) has no member in python-pkcs11's `Mechanism` enum, and its
parameter, `CK_RSA_AES_KEY_WRAP_PARAMS`, holds a pointer to a `CK_RSA_PKCS_OAEP_PARAMS`.
python-pkcs11 passes a `bytes` parameter through unchanged, so the structure is laid out here
with ctypes (CK_ULONG is a C `unsigned long`, as the PKCS#11 headers define it) and kept alive
for as long as the call runs.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from pkcs11 import MGF, Mechanism

from keyplan.crypto.wrap import WrapMethod

CKM_RSA_AES_KEY_WRAP = 0x1054
_CKZ_DATA_SPECIFIED = 1

_OAEP_HASH = {"SHA-1": (Mechanism.SHA_1, MGF.SHA1), "SHA-256": (Mechanism.SHA256, MGF.SHA256)}


def oaep_parameters(method: WrapMethod) -> tuple[Mechanism, MGF, None]:
    """python-pkcs11's RSA_PKCS_OAEP parameter: the method's hash for OAEP and MGF1, no label."""
    hash_mechanism, mgf = _OAEP_HASH[method.oaep_hash]
    return (hash_mechanism, mgf, None)


def _pseudo_mechanism(value: int, name: str) -> Mechanism:
    """A `Mechanism` instance for a value the enum lacks; python-pkcs11 only checks isinstance."""
    member = int.__new__(Mechanism, value)
    member._name_ = name
    member._value_ = value
    return member


RSA_AES_KEY_WRAP = _pseudo_mechanism(CKM_RSA_AES_KEY_WRAP, "RSA_AES_KEY_WRAP")


class _OaepParams(ctypes.Structure):
    _fields_ = [
        ("hashAlg", ctypes.c_ulong),
        ("mgf", ctypes.c_ulong),
        ("source", ctypes.c_ulong),
        ("pSourceData", ctypes.c_void_p),
        ("ulSourceDataLen", ctypes.c_ulong),
    ]


class _RsaAesKeyWrapParams(ctypes.Structure):
    _fields_ = [("ulAESKeyBits", ctypes.c_ulong), ("pOAEPParams", ctypes.POINTER(_OaepParams))]


@dataclass
class RsaAesKeyWrapParameter:
    """CK_RSA_AES_KEY_WRAP_PARAMS for an AES-256 transport key and the method's OAEP hash.
    Hold this object until the wrap call returns: `raw` points into it."""

    _oaep: _OaepParams
    _outer: _RsaAesKeyWrapParams
    raw: bytes

    @classmethod
    def for_method(cls, method: WrapMethod) -> RsaAesKeyWrapParameter:
        hash_mechanism, mgf = _OAEP_HASH[method.oaep_hash]
        oaep = _OaepParams(int(hash_mechanism), int(mgf), _CKZ_DATA_SPECIFIED, None, 0)
        outer = _RsaAesKeyWrapParams(256, ctypes.pointer(oaep))
        raw = ctypes.string_at(ctypes.addressof(outer), ctypes.sizeof(outer))
        return cls(oaep, outer, raw)
