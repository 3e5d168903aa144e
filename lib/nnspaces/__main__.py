"""``python -m nnspaces ...``: see :mod:`nnspaces.cli`."""

import sys

from .cli import main

sys.exit(main())
