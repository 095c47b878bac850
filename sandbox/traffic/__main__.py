"""``python -m sandbox.traffic``: see :mod:`sandbox.traffic.cli`."""

import sys

from sandbox.traffic.cli import main

sys.exit(main())
