"""``python -m sandbox.controlplane``: see :mod:`sandbox.controlplane.cli`."""

import sys

from sandbox.controlplane.cli import main

sys.exit(main())
