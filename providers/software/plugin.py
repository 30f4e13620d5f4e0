"""The static half of the software source: settings model, capabilities, and `open`."""

from __future__ import annotations

from keyplan.provider import KeySource, RuntimeContext, SourceCapabilities, SourcePlugin
from providers.software.keystore import Keystore
from providers.software.settings import SoftwareSourceSettings
from providers.software.source import CAPABILITIES, SoftwareSource
from providers.software.unlock import WarnOnce


class SoftwareSourcePlugin(SourcePlugin[SoftwareSourceSettings]):
    kind = "software"
    settings_model = SoftwareSourceSettings

    def declared_capabilities(self, settings: SoftwareSourceSettings) -> SourceCapabilities:
        return CAPABILITIES

    def open(self, settings: SoftwareSourceSettings, context: RuntimeContext) -> KeySource:
        keystore = Keystore(
            settings.keystore_path(context.working_dir),
            settings.passphrase_env,
            WarnOnce(context.log),
        )
        return SoftwareSource(context.address, keystore)


PLUGIN = SoftwareSourcePlugin()
