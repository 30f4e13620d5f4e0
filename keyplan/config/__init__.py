"""The configuration language: loading `*.kp.hcl` files into the evaluated `Config` model
(`load_config`), and checking it against the installed plugins without a cloud
(`validate_config`). Every user error is a diagnostic with a file, line and column.
"""

from keyplan.config.load import load_config
from keyplan.config.model import Config, KeyConfig, PluginBlock, StateBackendConfig, VariableValue
from keyplan.config.validate import key_spec, validate_config

__all__ = [
    "Config",
    "KeyConfig",
    "PluginBlock",
    "StateBackendConfig",
    "VariableValue",
    "key_spec",
    "load_config",
    "validate_config",
]
