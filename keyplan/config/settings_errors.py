"""A block's settings refused by its plugin's settings model, told as diagnostics: an argument
the block has not (with a suggestion), a required one missing, a value that does not fit. The
source, provider and state blocks all say it the same way; pydantic's messages describe the
expected input and never echo it, so no value reaches a message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic_core import ErrorDetails

from keyplan.config.suggestions import did_you_mean
from keyplan.diagnostics import Diagnostics, SourceRange


def settings_diagnostics(
    errors: Sequence[ErrorDetails],
    fields: Sequence[str],
    diagnostics: Diagnostics,
    *,
    block: str,
    range: SourceRange | None,
    attribute_ranges: Mapping[str, SourceRange],
    address: str | None = None,
) -> None:
    """One diagnostic per error. `block` names the block as the messages say it, e.g.
    `source "software" block source.software.main` or `state "pg" block`."""
    for error in errors:
        location = [str(part) for part in error["loc"]]
        attribute = location[0] if location else ""
        path = ".".join(location)
        where = attribute_ranges.get(attribute, range)
        if error["type"] == "extra_forbidden":
            diagnostics.error(
                "Unsupported argument",
                f"A {block} has no argument `{attribute}`.{did_you_mean(attribute, fields)} Its arguments are "
                f"{', '.join(fields)}; remove it or correct its name.",
                range=where,
                address=address,
            )
        elif error["type"] == "missing":
            diagnostics.error(
                "Missing required argument",
                f"The {block} must set `{path}`. Add `{path} = ...` to the block.",
                range=range,
                address=address,
            )
        else:
            diagnostics.error(
                "Invalid argument value",
                f"`{path}` of the {block} is not valid: {str(error['msg']).removeprefix('Value error, ')}. "
                "Correct the value.",
                range=where,
                address=address,
            )
