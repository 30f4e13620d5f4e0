"""State in an S3 bucket (`keyplan { state "s3" { ... } }`), shared by a team.

Public surface: `PLUGIN` (entry point `keyplan.state_backends:s3`) and its settings model.
"""

from providers.s3state.backend import PLUGIN, S3Backend, S3Plugin, S3Settings

__all__ = ["PLUGIN", "S3Backend", "S3Plugin", "S3Settings"]
