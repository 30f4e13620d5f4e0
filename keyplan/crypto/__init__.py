"""Cryptography keyplan performs itself: the wrap formats the clouds accept (RSA-OAEP and the
CKM_RSA_AES_KEY_WRAP composition), material fingerprints, and the type that holds material.

Everything here is built on the `cryptography` package; nothing here talks to a cloud.
"""

from keyplan.crypto.fingerprint import fingerprint_material
from keyplan.crypto.secret import SecretBytes
from keyplan.crypto.wrap import WrapMethod, unwrap, wrap

__all__ = ["SecretBytes", "WrapMethod", "fingerprint_material", "unwrap", "wrap"]
