"""``python -m nnspaces run --profile NAME``: see :mod:`nnspaces.run`."""

import sys

from .run import main

sys.exit(main())
