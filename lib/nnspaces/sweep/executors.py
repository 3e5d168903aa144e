"""Where runs execute: one run on a worker, and the local and Dask executors (see
:mod:`nnspaces.sweep`)."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..files import write_json

EXECUTORS = ("local", "dask")


# --------------------------------------------------------------------------- one run (worker side)


def execute_run(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one grid point's notebooks in a temporary folder and return what it wrote.

    ``job``: ``id``, ``parameters`` (a RunConfig's), ``notebooks``, ``threads`` (torch/BLAS
    threads for the notebooks' kernels, None for their default). Runs on a worker; returns
    the notebooks' rows, timings and ``files`` (path relative to the run's folder -> bytes).
    """
    from ..report import write_report
    from ..run import THREAD_VARIABLES, run_notebooks

    if job.get("threads"):
        for var in THREAD_VARIABLES:
            os.environ[var] = str(job["threads"])  # the notebook's kernel inherits these
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"nnspaces-{job['id']}-") as tmp:
        config = RunConfig(**{**job["parameters"], "out_dir": tmp})
        rows = run_notebooks(config, only=list(job["notebooks"]), progress=False)
        record_path = Path(tmp) / "run.json"
        record = json.loads(record_path.read_text())
        record["parameters"]["out_dir"] = None  # the temporary folder is gone once we return
        write_json(record_path, record)
        write_report(tmp)
        files = {
            p.relative_to(tmp).as_posix(): p.read_bytes()
            for p in sorted(Path(tmp).rglob("*"))
            if p.is_file() and p.relative_to(tmp).parts[0] != "models"
        }
    failed = [r for r in rows if r["status"] != "ok"]
    return {
        "id": job["id"],
        "status": "failed" if failed else "ok",
        "error": "; ".join(f"{r['notebook']}: {r['status']}" for r in failed),
        "notebooks": [{k: v for k, v in r.items() if k != "output"} for r in rows],
        "notebook_seconds": round(sum(r["seconds"] for r in rows), 1),
        "seconds": round(time.perf_counter() - start, 1),
        "host": socket.gethostname(),
        "files": files,
    }


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

            # Forked workers start with what this process has imported: importing papermill,
            # nbconvert and torch once here instead of in every worker saves seconds a run.
            # (Safe: this process has run no torch computation and holds no kernel.)
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            if method == "fork":
                import nbconvert  # noqa: F401
                import papermill  # noqa: F401

                from .. import report, run  # noqa: F401
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
