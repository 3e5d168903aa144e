"""Inverse maps: images that make a network give a chosen output.

``api`` (:func:`invert`, with ``options``) looks a method up in the registry ``methods``
and calls the entry's ``solve`` (``solve``: through ``solvers`` / ``roots`` / ``exact``, with
``priors``; ``specialise`` folds a network for them) on ``targets``; ``results`` measures the
images; ``crosscheck`` compares methods and networks;
``natural`` searches for pre-images that look like digits.
"""

from .api import *  # noqa: F403  (its __all__: the inversion API)
from .api import __all__ as _api
from .crosscheck import comparison_table, cross_check, run_methods
from .imagesets import save_inversions
from .natural import NaturalPreimages, natural_preimages

__all__ = [
    *_api,
    "NaturalPreimages",
    "comparison_table",
    "cross_check",
    "natural_preimages",
    "run_methods",
    "save_inversions",
]
