"""The software key source: material generated from the operating system's CSPRNG and kept in
an encrypted keystore file, for development, the quickstart and teams without an HSM.

Public surface: `PLUGIN` (entry point `keyplan.sources:software`), its settings model and the
runtime source. Everything else in this package is private.
"""

from providers.software.plugin import PLUGIN, SoftwareSourcePlugin
from providers.software.settings import SoftwareSourceSettings
from providers.software.source import SoftwareSource

__all__ = ["PLUGIN", "SoftwareSource", "SoftwareSourcePlugin", "SoftwareSourceSettings"]
