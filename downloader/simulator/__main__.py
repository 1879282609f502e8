"""``python -m downloader.simulator``: see ``command.py``."""

import sys

from .command import main

sys.exit(main())
