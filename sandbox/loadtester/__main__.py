"""``python -m sandbox.loadtester``."""

import sys

from sandbox.loadtester.cli import main

sys.exit(main())
