"""Deciding the registered claims (:mod:`.our_claims`): one in a notebook (:func:`claim`), or
every one from a run's saved metrics (:func:`evaluate_claims`, for the report, the README
block and the sweep)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from . import lesson_claims, our_claims  # noqa: F401  (register the claims)
from .claims import _REGISTRY, Claim, Rendered
from .metrics import MetricsLayoutError
from .numbers import read_back, read_metrics


def claims() -> dict[str, Claim]:
    """Every registered claim by id, in the order they were registered."""
    return dict(_REGISTRY)


def get_claim(claim_id: str) -> Claim:
    """The registered claim ``claim_id``; a KeyError names the registered ones."""
    every = claims()
    if claim_id not in every:
        raise KeyError(f"no claim {claim_id!r}; registered: {', '.join(every)}")
    return every[claim_id]


def as_read_back(cls: type, metrics: Any) -> Any:
    """``metrics`` as its file would read back: a notebook's dataclass of live results goes
    through ``to_dict`` and ``from_dict`` (so a notebook and a saved file decide a claim from
    the same numbers); a file's dict is read with ``from_dict``."""
    if isinstance(metrics, Mapping):
        return cls.from_dict(metrics)
    if not isinstance(metrics, cls):
        raise TypeError(f"a claim on {cls.__name__} was given a {type(metrics).__name__}")
    return cls.from_dict(metrics.to_dict())


def claim(claim_id: str, metrics: Any) -> Rendered:
    """The claim ``claim_id`` decided on ``metrics`` (the dataclass the notebook saves, or
    part of it), shown as Markdown with the numbers that decide it."""
    c = get_claim(claim_id)
    return Rendered(c, tuple(c.verdicts(as_read_back(c.reads, metrics))))


COLUMNS = ["id", "notebook", "subject", "holds", "sentence", "numbers"]


def evaluate_claims(run_dir: str | Path | Mapping[str, dict]) -> pd.DataFrame:
    """Every registered claim decided from a run's saved metrics (a run's folder, or its
    metrics files by name as :func:`~.numbers.read_metrics` gives them): one row per claim and
    subject with ``id``, ``notebook``, ``subject``, ``holds``, ``sentence`` and ``numbers``.
    A claim whose file is missing, or of another (older) layout, gives no row."""
    metrics = run_dir if isinstance(run_dir, Mapping) else read_metrics(run_dir)
    rows = []
    for c in claims().values():
        try:
            m = read_back(c.reads, metrics.get(c.reads.name))
            found = c.verdicts(m) if m is not None else []
        except (MetricsLayoutError, KeyError, TypeError, ValueError, IndexError):
            continue  # a file of an older layout decides nothing
        rows += [
            {
                "id": v.claim,
                "notebook": v.notebook,
                "subject": v.subject,
                "holds": v.holds,
                "sentence": v.sentence,
                "numbers": v.numbers,
            }
            for v in found
        ]
    return pd.DataFrame(rows, columns=COLUMNS)
