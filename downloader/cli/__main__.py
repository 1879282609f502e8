"""``python -m downloader.cli`` runs the ``recall-dl`` command."""

import sys

from downloader.cli import main

sys.exit(main())
