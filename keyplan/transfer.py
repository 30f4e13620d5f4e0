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
    PluginAnswerError,
    Provider,
    WrappedMaterial,
    WrapRequest,
)


def wrap_request(handle: str, algorithm: Algorithm, parameters: ImportParameters) -> WrapRequest:
    """What a key source is asked to wrap for a target's import parameters."""
    return WrapRequest(
        handle=handle, algorithm=algorithm, method=parameters.method, wrapping_public_key=parameters.wrapping_public_key
    )


def checked_wrap(source: str, wrapped: WrappedMaterial, parameters: ImportParameters) -> WrappedMaterial:
    """`wrapped`, when the source wrapped with the method asked for; a plugin fault otherwise."""
    if wrapped.method is not parameters.method:
        raise PluginAnswerError(source, f"wrap answered material wrapped with {wrapped.method}, asked for {parameters.method}")
    return wrapped


def source_wrapper(source: KeySource, handle: str, algorithm: Algorithm) -> MaterialWrapper:
    """Wraps the material behind `handle` in `source`, for whatever parameters it is given."""

    def wrap(parameters: ImportParameters) -> WrappedMaterial:
        return checked_wrap(source.address, source.wrap(wrap_request(handle, algorithm, parameters)), parameters)

    return wrap


def import_request(
    request: ImportParametersRequest,
    parameters: ImportParameters,
    wrapped: WrappedMaterial,
    *,
    address: str,
    managed_by: str,
    purpose: ImportPurpose,
    reimport_version_id: str | None = None,
    valid_to: datetime | None = None,
) -> ImportMaterialRequest:
    """The import of material wrapped for `parameters`, into the key `request` fetched them for."""
    return ImportMaterialRequest(
        remote_id=request.remote_id,
        address=address,
        managed_by=managed_by,
        key=request.key,
        parameters=parameters,
        wrapped=wrapped.blob,
        purpose=purpose,
        reimport_version_id=reimport_version_id,
        valid_to=valid_to,
    )


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
        import_request(
            request,
            prepared.parameters,
            prepared.wrapped,
            address=address,
            managed_by=managed_by,
            purpose=purpose,
            reimport_version_id=reimport_version_id,
            valid_to=valid_to,
        )
    )
