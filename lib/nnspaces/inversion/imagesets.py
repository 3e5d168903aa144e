"""Every image set a notebook shows, saved in one ``.npz`` file per notebook, and read back.

The file holds plain arrays (no pickle): per network and method the images and targets; for
the natural pre-images and other results also the classes and their settings as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .natural import NaturalPreimages
from .results import InversionResult


def save_inversions(
    results: Mapping[str, Mapping[str, InversionResult]],
    path: str | Path,
    *,
    natural: Mapping[str, NaturalPreimages] | None = None,
    extra: Mapping[str, InversionResult] | None = None,
) -> Path:
    """Every image set shown, in one ``.npz`` file (written atomically): per network,
    ``{network}/{method}/images`` ``(C, *shape)``, ``.../targets`` ``(C, K)`` and
    ``.../classes`` ``(C,)`` (the digit each image is meant to be: what the judges check) for
    each method; ``{network}/natural/images|targets|classes|settings`` for the natural pre-images;
    ``{key}/images|targets|classes|settings`` for each other result in ``extra`` (e.g.
    ``"resnet18/priors/tv 0.1"``). ``settings`` is a JSON string (the natural search's
    targets, prior, chosen weight and recognition count; a result's own settings), so the
    file loads without pickle."""
    arrays: dict[str, np.ndarray] = {}

    def put(key: str, r: InversionResult, settings: dict | None = None) -> None:
        arrays[f"{key}/images"] = r.image.detach().cpu().numpy()
        arrays[f"{key}/targets"] = r.target.detach().cpu().numpy()
        arrays[f"{key}/classes"] = np.asarray(r.classes, dtype=np.int64)
        if settings is not None:
            arrays[f"{key}/settings"] = np.asarray(json.dumps(settings, default=str))

    for net, by_method in results.items():
        for method, r in by_method.items():
            put(f"{net}/{method}", r)
    for net, found in (natural or {}).items():
        summary = {k: v for k, v in found.to_dict().items() if k not in ("frontier", "result")}
        put(f"{net}/natural", found.result, summary)
    for key, r in (extra or {}).items():
        put(key, r, r.settings)
    return atomic_write(path, lambda tmp: np.savez_compressed(tmp, **arrays))
