"""SecretBytes refuses every accidental way out."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from keyplan.crypto import SecretBytes


def test_secret_bytes_never_show_their_content() -> None:
    secret = SecretBytes(b"\x01\x02super-secret-material")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % (secret,)):
        assert "super" not in text and "redacted" in text
    with pytest.raises(TypeError):
        json.dumps(secret)
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError):
        bytes(secret)
    with pytest.raises(TypeError):
        _ = secret == SecretBytes(b"\x01\x02super-secret-material")
    with pytest.raises(TypeError):
        hash(secret)
    assert copy.deepcopy(secret).reveal() == secret.reveal()
    secret.wipe()
    assert secret.reveal() == bytes(len(secret))
