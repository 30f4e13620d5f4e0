"""Choosing how material travels to a target: the strongest wrap method that both the key
source can perform and the target accepts for the algorithm, within the size limit of direct
RSA-OAEP. The choice is shown in the plan; when nothing fits, the reason says why and what to
change.
"""

from __future__ import annotations

from dataclasses import dataclass

from keyplan.algorithms import Algorithm, MaterialKind
from keyplan.crypto.wrap import direct_oaep_limit
from keyplan.plan.model import WrapChoice
from keyplan.provider import SourceCapabilities, WrapOffer

# PKCS#8 DER sizes of EC private keys (with the public key), for the direct-OAEP size check.
_PKCS8_SIZE = {"P-256": 138, "P-384": 185}


def encoded_size(algorithm: Algorithm) -> int:
    """How many bytes the material is on the wire (raw secret, or PKCS#8 DER)."""
    if algorithm.material_length is not None:
        return algorithm.material_length
    if algorithm.kind is MaterialKind.EC and algorithm.curve in _PKCS8_SIZE:
        return _PKCS8_SIZE[algorithm.curve]
    return 10_000  # RSA private keys never fit direct OAEP


@dataclass(frozen=True)
class Negotiation:
    offer: WrapOffer | None
    choice: WrapChoice | None
    problem: str = ""  # why nothing fits, with how to fix it


def negotiate(
    algorithm: Algorithm,
    offers: list[WrapOffer],
    capabilities: SourceCapabilities,
    *,
    source: str,
    target: str,
) -> Negotiation:
    if algorithm.name not in capabilities.algorithms:
        return Negotiation(
            None,
            None,
            f"Source {source} cannot generate {algorithm.name}. It supports: "
            f"{', '.join(sorted(capabilities.algorithms)) or 'nothing'}. Choose another algorithm or source.",
        )
    if not offers:
        return Negotiation(None, None, f"{target} cannot import {algorithm.name} keys. Remove it from `targets`.")
    if algorithm.kind.asymmetric and not capabilities.exact_pkcs8:
        return Negotiation(
            None,
            None,
            f"Source {source} pads PKCS#8 private keys before wrapping, so {target} would reject the "
            f"{algorithm.name} material as malformed. Use a source that wraps exact PKCS#8 (a production HSM "
            "with CKM_RSA_AES_KEY_WRAP, or the software keystore) for asymmetric keys.",
        )
    fitting = [
        o
        for o in offers
        if o.method in capabilities.wrap_methods
        and (o.method.hybrid or encoded_size(algorithm) <= direct_oaep_limit(o.wrapping_key_bits, o.method))
    ]
    if not fitting:
        accepted = ", ".join(dict.fromkeys(o.method.value for o in offers))
        can = ", ".join(sorted(m.value for m in capabilities.wrap_methods)) or "none"
        return Negotiation(
            None,
            None,
            f"No wrap method fits {algorithm.name} from {source} to {target}: the target accepts {accepted}; "
            f"the source can perform {can}. Use a source that supports one of the accepted methods.",
        )
    best = max(fitting, key=lambda o: (o.method.strength, o.wrapping_key_bits))
    return Negotiation(
        best,
        WrapChoice(
            method=best.method, wrapping_key_bits=best.wrapping_key_bits, in_hardware=capabilities.wraps_in_hardware
        ),
    )
