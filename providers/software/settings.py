"""Settings of a `source "software"` block."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from keyplan.provider import PluginSettings

DEFAULT_KEYSTORE = Path(".keyplan/keystore.json")
DEFAULT_PASSPHRASE_ENV = "KEYPLAN_KEYSTORE_PASSPHRASE"


class SoftwareSourceSettings(PluginSettings):
    keystore: Path = Field(
        default=DEFAULT_KEYSTORE,
        description="The encrypted keystore file; a relative path is resolved against the configuration directory.",
    )
    passphrase_env: str = Field(
        default=DEFAULT_PASSPHRASE_ENV,
        min_length=1,
        description=(
            "Name of the environment variable holding the keystore passphrase. When it is unset, a "
            "generated development key file next to the keystore protects it instead."
        ),
    )

    def keystore_path(self, working_dir: Path) -> Path:
        return self.keystore if self.keystore.is_absolute() else working_dir / self.keystore
