"""Progress bars: one policy for the whole library.

Bars are shown by default when someone is watching (a JupyterLab session, a terminal) and
left out of batch runs, where they would only be saved into the executed notebooks as
half-drawn widgets. The runner (:func:`nnspaces.runner.execute.run_notebooks`) marks its notebook
kernels as a batch run with the environment variable :data:`BATCH_ENV`, which they inherit;
set it yourself (``NNSPACES_BATCH=1 papermill ...``) for the same behaviour elsewhere. Every
function that takes ``progress`` reads ``None`` as "the policy" and leaves an explicit
``True`` / ``False`` alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Set (to anything but "" or "0") in the notebook kernels of a batch run.
BATCH_ENV = "NNSPACES_BATCH"


def in_batch() -> bool:
    """True inside a batch run (:data:`BATCH_ENV` is set)."""
    return os.environ.get(BATCH_ENV, "") not in ("", "0")


def show_progress(progress: bool | None = None) -> bool:
    """``progress`` when given, else the policy: on interactively, off in batch runs."""
    return (not in_batch()) if progress is None else bool(progress)


@contextmanager
def batch_run() -> Iterator[None]:
    """Mark everything started inside (notebook kernels inherit the environment) as a batch
    run; the variable is restored afterwards."""
    old = os.environ.get(BATCH_ENV)
    os.environ[BATCH_ENV] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(BATCH_ENV, None)
        else:
            os.environ[BATCH_ENV] = old


def progress_bar(total: int, *, desc: str, progress: bool | None = None, **kwargs: Any):
    """A ``tqdm.auto`` bar of ``total`` steps, shown according to :func:`show_progress`.

    Update it by hand and end it with :func:`finish`, so that a loop that stops early
    because it is done (a solver at its tolerance) does not leave an unfinished bar.
    """
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not show_progress(progress), **kwargs)


def finish(bar) -> None:
    """Close ``bar`` as complete: a loop that stopped early at its goal is done, not failed
    (the bar's total becomes the steps it did; a notebook bar would otherwise turn red)."""
    if not bar.disable and bar.total and bar.n < bar.total:
        n = bar.n
        bar.reset(total=n)
        bar.update(n)
    bar.close()
