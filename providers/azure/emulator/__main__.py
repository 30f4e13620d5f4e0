"""`python -m providers.azure.emulator`: serve one emulated vault."""

import sys

from providers.azure.emulator import main

sys.exit(main())
