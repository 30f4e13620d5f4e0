"""The static half of the software source: settings model, capabilities, and `open`."""

from __future__ import annotations

from keyplan.provider import KeySource, PluginSettings, RuntimeContext, SourceCapabilities, SourcePlugin
from providers.software.keystore import Keystore, WarnOnce
from providers.software.settings import SoftwareSourceSettings
from providers.software.source import CAPABILITIES, SoftwareSource


class SoftwareSourcePlugin(SourcePlugin):
    kind = "software"
    settings_model = SoftwareSourceSettings

    def declared_capabilities(self, settings: PluginSettings) -> SourceCapabilities:
        return CAPABILITIES

    def open(self, settings: PluginSettings, context: RuntimeContext) -> KeySource:
        if not isinstance(settings, SoftwareSourceSettings):
            settings = SoftwareSourceSettings.model_validate(settings.model_dump())
        keystore = Keystore(
            settings.keystore_path(context.working_dir),
            settings.passphrase_env,
            WarnOnce(context.log),
        )
        return SoftwareSource(context.address, keystore)


PLUGIN = SoftwareSourcePlugin()
