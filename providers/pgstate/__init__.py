"""State in a PostgreSQL database (`keyplan { state "pg" { ... } }`), shared by a team.

Public surface: `PLUGIN` (entry point `keyplan.state_backends:pg`) and its settings model.
Modules: `settings` (the state block), `backend` (the backend and its plugin), `errors` (driver
failures as state errors), `testing` (a throwaway cluster for tests).
"""

from providers.pgstate.backend import PLUGIN, PgBackend, PgPlugin
from providers.pgstate.settings import PgSettings

__all__ = ["PLUGIN", "PgBackend", "PgPlugin", "PgSettings"]
