"""`python -m providers.gcp.emulator`: serve the Cloud KMS emulator."""

import sys

from providers.gcp.emulator import main

sys.exit(main())
