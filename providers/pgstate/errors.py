"""PostgreSQL failures told as state errors: what went wrong, in the user's terms, and how to fix it."""

from __future__ import annotations

import psycopg

from keyplan.state.backend import StateError, StateErrorKind
from providers.pgstate.settings import PgSettings


def classified(error: psycopg.Error, settings: PgSettings, doing: str) -> StateError:
    """A driver failure as the StateError it is for the user (login, missing database, rights,
    an unreachable server, or anything else PostgreSQL said), with how to fix it."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    state = error.sqlstate or ""
    where = f"the state database (schema {settings.schema_name})"
    if state in ("28P01", "28000") or "password authentication failed" in message or "no password supplied" in message:
        return StateError(
            StateErrorKind.AUTH,
            f"Access denied: cannot {doing} {where}",
            f"PostgreSQL refused the login ({message}). Check the user and password in the connection string in "
            f"${settings.conn_str_env}.",
        )
    if state == "3D000" or ("database" in message and "does not exist" in message):
        return StateError(
            StateErrorKind.NOT_FOUND,
            f"The state database does not exist: cannot {doing} {where}",
            f"{message}. Create the database (keyplan creates only its schema and tables), or correct the "
            f"connection string in ${settings.conn_str_env}.",
        )
    if state == "42501":
        return StateError(
            StateErrorKind.AUTH,
            f"Permission denied: cannot {doing} {where}",
            f"{message}. Grant the user rights on the schema {settings.schema_name} (or CREATE on the "
            "database, to let keyplan create it).",
        )
    if isinstance(error, psycopg.OperationalError):
        return StateError(
            StateErrorKind.UNREACHABLE,
            f"Cannot reach the state database to {doing} it",
            f"{message}. Check that the server is running and the host and port in ${settings.conn_str_env}, "
            "then run the command again; nothing was lost.",
        )
    return StateError(StateErrorKind.FATAL, f"Cannot {doing} {where}", f"PostgreSQL said: {message}.")
