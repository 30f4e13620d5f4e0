"""keyplan's AWS KMS support: the provider plugin (on boto3) and the local KMS emulator.

Importing this package is cheap: boto3 is imported only when a provider is opened.
"""

from providers.aws.emulator import KmsEmulator
from providers.aws.provider import PLUGIN, AwsKmsPlugin, AwsKmsProvider, AwsSettings

__all__ = ["PLUGIN", "AwsKmsPlugin", "AwsKmsProvider", "AwsSettings", "KmsEmulator"]
