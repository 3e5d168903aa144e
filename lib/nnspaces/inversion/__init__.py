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
    "stopping_rules",
]


def stopping_rules() -> dict[str, float]:
    """When the iterative solvers stop a class or hand it on, from the solvers' own constants:
    ``handoff`` (a first-order solver hands a class within this relative error to
    Levenberg-Marquardt), ``root_stall_drop`` / ``root_stall_window`` (a root finder stops a
    class whose residual fell by less than this fraction over this many steps) and
    ``stall_drop`` / ``stall_window`` (the same for the first-order solvers' squared error)."""
    from .roots import HANDOFF, ROOT_STALL_DROP, ROOT_STALL_WINDOW
    from .solvers import STALL_DROP, STALL_WINDOW

    return {
        "handoff": HANDOFF,
        "root_stall_drop": ROOT_STALL_DROP,
        "root_stall_window": ROOT_STALL_WINDOW,
        "stall_drop": STALL_DROP,
        "stall_window": STALL_WINDOW,
    }
