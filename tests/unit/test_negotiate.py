"""Choosing the wrap method between a key source and a target."""

from __future__ import annotations

from keyplan.algorithms import ALGORITHMS
from keyplan.crypto.wrap import WrapMethod
from keyplan.plan.negotiate import negotiate
from keyplan.provider import SourceCapabilities, WrapOffer

ALL = frozenset(WrapMethod)
SOFTHSM = frozenset({WrapMethod.RSAES_OAEP_SHA_1, WrapMethod.RSA_AES_KEY_WRAP_SHA_1})


def caps(methods: frozenset[WrapMethod], exact: bool = True) -> SourceCapabilities:
    return SourceCapabilities(algorithms=frozenset(ALGORITHMS), wrap_methods=methods, exact_pkcs8=exact)


def offers(*methods: WrapMethod, bits: int = 4096) -> list[WrapOffer]:
    return [WrapOffer(method=m, wrapping_key_bits=bits) for m in methods]


def test_the_strongest_common_method_wins() -> None:
    result = negotiate(ALGORITHMS["AES_256"], offers(*WrapMethod), caps(ALL), source="s", target="t")
    assert result.offer is not None and result.offer.method is WrapMethod.RSA_AES_KEY_WRAP_SHA_256
    softhsm = negotiate(ALGORITHMS["AES_256"], offers(*WrapMethod), caps(SOFTHSM), source="s", target="t")
    assert softhsm.offer is not None and softhsm.offer.method is WrapMethod.RSA_AES_KEY_WRAP_SHA_1


def test_direct_oaep_is_only_chosen_when_the_material_fits() -> None:
    direct = offers(WrapMethod.RSAES_OAEP_SHA_256, bits=2048)
    assert negotiate(ALGORITHMS["EC_P384"], direct, caps(ALL), source="s", target="t").offer is not None
    refused = negotiate(ALGORITHMS["RSA_2048"], direct, caps(ALL), source="s", target="t")
    assert refused.offer is None and "No wrap method fits" in refused.problem


def test_a_source_that_pads_pkcs8_cannot_send_private_keys() -> None:
    result = negotiate(ALGORITHMS["EC_P256"], offers(*WrapMethod), caps(SOFTHSM, exact=False), source="pkcs11.hsm", target="aws.main")
    assert result.offer is None and "pads PKCS#8" in result.problem
    assert negotiate(ALGORITHMS["AES_256"], offers(*WrapMethod), caps(SOFTHSM, exact=False), source="s", target="t").offer


def test_nothing_in_common_says_what_each_side_can_do() -> None:
    result = negotiate(
        ALGORITHMS["AES_256"], offers(WrapMethod.RSA_AES_KEY_WRAP_SHA_256), caps(SOFTHSM), source="pkcs11.hsm", target="gcp.main"
    )
    assert result.offer is None
    assert "RSA_AES_KEY_WRAP_SHA_256" in result.problem and "RSAES_OAEP_SHA_1" in result.problem
