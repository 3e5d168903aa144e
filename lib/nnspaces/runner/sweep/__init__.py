"""Sweeps: the notebooks over a grid of parameters (``grid``), one folder a run (``folder``),
run on a pool (``engine``), the spread across runs (``aggregate``)."""

from .engine import *  # noqa: F403  (its __all__)
from .engine import __all__  # noqa: F401
