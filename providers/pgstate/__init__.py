"""State in a PostgreSQL database (`keyplan { state "pg" { ... } }`), shared by a team.

Public surface: `PLUGIN` (entry point `keyplan.state_backends:pg`) and its settings model.
"""

from providers.pgstate.backend import PLUGIN, PgBackend, PgPlugin, PgSettings

__all__ = ["PLUGIN", "PgBackend", "PgPlugin", "PgSettings"]
