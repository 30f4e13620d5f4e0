"""`python -m providers.aws.emulator`: serve the KMS emulator."""

import sys

from providers.aws.emulator import main

sys.exit(main())
