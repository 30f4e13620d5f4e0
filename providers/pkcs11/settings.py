"""Settings of a `source "pkcs11"` block. The user PIN is never a setting: `pin_env` names the
environment variable that holds it, so it stays out of configuration, state, plans and output."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from keyplan.provider import PluginSettings


class Pkcs11SourceSettings(PluginSettings):
    module: Path = Field(description="Path of the token's PKCS#11 library (.so); relative paths resolve against the configuration directory.")
    token_label: str = Field(min_length=1, description="Label of the token holding keyplan's keys.")
    pin_env: str = Field(min_length=1, description="Name of the environment variable holding the user PIN.")
    slot: int | None = Field(default=None, ge=0, description="Slot id, when several tokens carry the same label.")
    key_label_prefix: str = Field(default="keyplan", min_length=1, description="Prefix of the CKA_LABEL of every object keyplan creates.")
    wrap_with_trusted: bool = Field(
        default=False,
        description=(
            "Create keys with CKA_WRAP_WITH_TRUSTED: they can then only be wrapped under a wrapping "
            "key the security officer marked trusted (see `trust_wrapping_key`)."
        ),
    )
    module_env: dict[str, str] = Field(
        default={},
        description=(
            "Environment the library reads when it initialises, e.g. SOFTHSM2_CONF for SoftHSM. A value "
            "starting with ./ or ../ is a path relative to the configuration directory; others are used as written."
        ),
    )

    def module_path(self, working_dir: Path | None = None) -> Path:
        if self.module.is_absolute() or working_dir is None:
            return self.module
        return working_dir / self.module

    def environment(self, working_dir: Path | None = None) -> dict[str, str]:
        """`module_env` with ./ and ../ values resolved against the configuration directory, so
        a configuration that points at a token beside it works from any current directory."""
        if working_dir is None:
            return dict(self.module_env)
        return {
            name: str((working_dir / value).resolve()) if value.startswith(("./", "../")) else value
            for name, value in self.module_env.items()
        }
