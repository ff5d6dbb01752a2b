"""``python -m echochat`` is the ``echochat`` command."""

import sys

from echochat.cli import main

sys.exit(main())
