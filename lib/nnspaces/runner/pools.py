"""Where runs execute: one run on a worker, and the local and Dask executors (see
:mod:`nnspaces.runner.sweep.engine`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager

EXECUTORS = ("local", "dask")


# --------------------------------------------------------------------------- executors


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@contextmanager
def make_executor(
    kind: str = "local", *, workers: int | None = None, scheduler: str | None = None
) -> Iterator[Executor]:
    """A ``concurrent.futures.Executor`` for the runs: ``local`` is a process pool of
    ``workers`` processes; ``dask`` a ``dask.distributed`` client's executor, on a new
    ``LocalCluster`` of ``workers`` single-threaded processes or on ``scheduler`` (an
    address such as ``tcp://host:8786``, whose workers have this environment installed)."""
    if kind not in EXECUTORS:
        raise ValueError(f"unknown executor {kind!r}; allowed: {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers={workers!r} must be a positive integer")
    if scheduler and kind != "dask":
        raise ValueError("a scheduler address needs --executor dask")
    workers = workers or default_workers()
    with ExitStack() as stack:
        if kind == "local":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # Forked workers start with what this process has imported (the sweep has the
            # runner, papermill, nbconvert and torch): importing them once here instead of in
            # every worker saves seconds a run. (Safe: this process has run no torch
            # computation and holds no kernel.)
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            if method == "fork":
                import nbconvert  # noqa: F401
                import papermill  # noqa: F401
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method))
            try:
                yield pool
            except BaseException:  # Ctrl-C or an error here: stop the runs now, not later
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()  # its notebook kernel exits with it
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
            return
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise RuntimeError(
                "the dask executor needs dask.distributed: pip install 'dask[distributed]' "
                "(or the repository's dev extra)"
            ) from None
        if scheduler:
            client = stack.enter_context(Client(scheduler))
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=50,
                )
            )
            client = stack.enter_context(Client(cluster))
        yield client.get_executor(pure=False)
