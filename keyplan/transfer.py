"""The one import sequence: fetch a target's import parameters, have the key source wrap the
material for them, and import it. The apply walker, `keyplan import`'s proof and plugins that
write transfer files all go through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from keyplan.algorithms import Algorithm
from keyplan.provider import (
    ImportMaterialRequest,
    ImportMaterialResponse,
    ImportParameters,
    ImportParametersRequest,
    ImportPurpose,
    KeySource,
    MaterialWrapper,
    Provider,
    WrappedMaterial,
    WrapRequest,
)


class WrongWrapMethod(Exception):
    """A key source wrapped with another method than the one asked for: a plugin bug."""


def source_wrapper(source: KeySource, handle: str, algorithm: Algorithm) -> MaterialWrapper:
    """Wraps the material behind `handle` in `source`, for whatever parameters it is given."""

    def wrap(parameters: ImportParameters) -> WrappedMaterial:
        wrapped = source.wrap(
            WrapRequest(
                handle=handle,
                algorithm=algorithm,
                method=parameters.method,
                wrapping_public_key=parameters.wrapping_public_key,
            )
        )
        if wrapped.method is not parameters.method:
            raise WrongWrapMethod(f"{source.address} wrapped with {wrapped.method}, asked for {parameters.method}")
        return wrapped

    return wrap


@dataclass(frozen=True)
class PreparedImport:
    parameters: ImportParameters
    wrapped: WrappedMaterial


def prepare_import(provider: Provider, request: ImportParametersRequest, wrap: MaterialWrapper) -> PreparedImport:
    """Import parameters from the target, and the material wrapped for them."""
    parameters = provider.get_import_parameters(request)
    return PreparedImport(parameters, wrap(parameters))


def import_material(
    provider: Provider,
    request: ImportParametersRequest,
    wrap: MaterialWrapper,
    *,
    address: str,
    managed_by: str,
    purpose: ImportPurpose,
    reimport_version_id: str | None = None,
    valid_to: datetime | None = None,
) -> ImportMaterialResponse:
    """The whole sequence: parameters, wrap, import."""
    prepared = prepare_import(provider, request, wrap)
    return provider.import_material(
        ImportMaterialRequest(
            remote_id=request.remote_id,
            address=address,
            managed_by=managed_by,
            key=request.key,
            parameters=prepared.parameters,
            wrapped=prepared.wrapped.blob,
            purpose=purpose,
            reimport_version_id=reimport_version_id,
            valid_to=valid_to,
        )
    )
