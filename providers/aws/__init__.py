"""keyplan's AWS KMS support: the provider plugin (on boto3) and the local KMS emulator.

Modules: `settings` (the provider block), `plugin` (static checks and wrap offers), `mapping`
(keyplan keys <-> KMS keys), `errors` (boto3 failures classified), `client` (the boto3 client
and paging), `provider` (the runtime provider), `emulator` (the local KMS).

Importing this package is cheap: boto3 is imported only when a provider is opened.
"""

from providers.aws.emulator import KmsEmulator
from providers.aws.plugin import PLUGIN, AwsKmsPlugin
from providers.aws.provider import AwsKmsProvider
from providers.aws.settings import AwsSettings

__all__ = ["PLUGIN", "AwsKmsPlugin", "AwsKmsProvider", "AwsSettings", "KmsEmulator"]
