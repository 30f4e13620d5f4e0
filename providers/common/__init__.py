"""What the cloud providers share at run time: the fan-out pool that reads many keys at once,
the start-up of an embedded emulator for `endpoint = "embedded"`, and the error classification
helpers that are the same for every cloud."""

from providers.common.embedded import EmbeddedEmulator
from providers.common.fanout import fan_out

__all__ = ["EmbeddedEmulator", "fan_out"]
