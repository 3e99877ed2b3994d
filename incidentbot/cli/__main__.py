"""``python -m incidentbot.cli``."""

import sys

from incidentbot.cli import main

sys.exit(main())
