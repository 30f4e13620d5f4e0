"""Turns python-pkcs11 exceptions into `SourceError`s that say what went wrong and how to fix
it. PKCS#11 errors carry a return code, never key material or PINs, and the messages built here
name only token labels, object labels and mechanisms."""

from __future__ import annotations

from pkcs11 import exceptions as p11

from keyplan.provider import SourceError


def token_error(action: str, exc: Exception, *, token: str) -> SourceError:
    """A SourceError for `exc`, raised while `action` (e.g. "wrapping key.a") on `token`."""
    code = type(exc).__name__
    if isinstance(exc, p11.PinIncorrect):
        return SourceError(
            "Wrong PIN for the PKCS#11 token",
            f"The token {token!r} rejected the PIN while {action}. For the user PIN, set the "
            "variable named by `pin_env` to the token's user PIN; repeated failures may lock the token.",
        )
    if isinstance(exc, p11.PinLocked):
        return SourceError(
            "The PKCS#11 token's user PIN is locked",
            f"The token {token!r} locked the user PIN after too many failures. Ask the security "
            "officer to unlock or reset it.",
        )
    if isinstance(exc, (p11.PinExpired, p11.PinInvalid, p11.PinLenRange)):
        return SourceError(
            "The PKCS#11 token does not accept this PIN",
            f"The token {token!r} refused the PIN ({code}). Check the value of the PIN variable.",
        )
    if isinstance(exc, (p11.MechanismInvalid, p11.MechanismParamInvalid, p11.ArgumentsBad)):
        return SourceError(
            "The PKCS#11 token does not support this mechanism",
            f"The token {token!r} refused a mechanism while {action} ({code}). Choose a wrap "
            "method the token advertises (see the source's capabilities).",
        )
    if isinstance(exc, (p11.KeyNotWrappable, p11.KeyUnextractable)):
        return SourceError(
            "The PKCS#11 token refused to wrap this key",
            f"The token {token!r} refused while {action} ({code}). A key created with "
            "CKA_WRAP_WITH_TRUSTED can only be wrapped under a wrapping key the security officer "
            "marked trusted: the security officer runs `keyplan hsm trust ADDR` for the key, or "
            "generate new material without `wrap_with_trusted` (`keyplan apply -replace=ADDR`).",
        )
    if isinstance(exc, (p11.DeviceRemoved, p11.TokenNotPresent, p11.SessionClosed, p11.DeviceError)):
        return SourceError(
            "The PKCS#11 token is not available",
            f"The token {token!r} went away while {action} ({code}). Reconnect it and run again.",
            retryable=True,
        )
    return SourceError(
        "The PKCS#11 token reported an error",
        f"The token {token!r} failed while {action} ({code}). Check the token's own logs.",
    )
