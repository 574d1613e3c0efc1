"""``python -m engine.cli`` runs the ``qriff`` command line."""

import sys

from engine.cli import main

sys.exit(main())
