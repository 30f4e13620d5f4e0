"""The attributes of `keyplan { state "pg" { ... } }`."""

from __future__ import annotations

from pydantic import Field

from keyplan.state.backend import StateBackendSettings

DEFAULT_CONN_STR_ENV = "KEYPLAN_PG_CONN_STR"


class PgSettings(StateBackendSettings):
    """The attributes of `state "pg" { ... }`."""

    conn_str_env: str = Field(
        default=DEFAULT_CONN_STR_ENV,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding the connection string (postgresql://... or key=value form).",
    )
    schema_name: str = Field(
        default="keyplan_state",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="The schema of keyplan's tables (created on first use if missing).",
    )
