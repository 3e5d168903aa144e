"""Parameter sweeps: many runs of the notebooks, on a process pool or a Dask cluster.

    python -m nnspaces sweep sweeps/seeds.toml              # what `make sweep` does
    python -m nnspaces sweep --name try --profile smoke --grid seed=0..3 --set quick=true
    python -m nnspaces sweep sweeps/seeds.toml --executor dask --workers 2
    python -m nnspaces sweep sweeps/seeds.toml --executor dask --scheduler tcp://host:8786

A :class:`SweepSpec` is a grid over the notebooks' parameters (any field of
:class:`~nnspaces.runner.config.RunConfig` but ``out_dir``) on top of a profile and some fixed
values; :func:`plan` expands it into one :class:`PlannedRun` per grid point, each with its
RunConfig (or the error that makes its values invalid: that run alone fails).

Each run is one call of :func:`execute_run` on an executor (any
``concurrent.futures.Executor``: a local process pool, or a Dask client's executor). It runs
the notebooks with papermill in a temporary folder and its own kernel, writes the run's own
report, and returns every file it wrote (but the models, which the checkpoint cache
reproduces) as bytes, so no shared file system is needed. Only the client writes the sweep's
folder ``results/<name>/``:

    sweep.json            the spec
    runs/<run>/           one finished run: its notebooks, metrics, figures, report, and
                          record.json (written last; the folder is renamed into place whole)
    table.csv, summary.csv, index.html, figures/    the aggregate (:mod:`.aggregate`)

A run counts as finished when its ``record.json`` says ``ok``, has the run's parameters, and
every file it lists is there with its size; anything else (a failed run, a half-copied
``runs/.<run>.partial`` folder left by a killed client) is redone when the sweep runs again.
A lock file keeps two sweeps out of one folder.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...files import write_json
from ...progress import show_progress
from ..config import RESULTS, RunConfig
from ..execute import THREAD_VARIABLES, run_notebooks
from ..pools import EXECUTORS, default_workers, make_executor
from ..report import write_report
from .folder import RECORD, claim, is_finished, locked, read_record, run_folder, store
from .grid import (
    FIGURE_NOTEBOOKS,
    PARAMETERS,
    PlannedRun,
    SweepSpec,
    load_spec,
    parse_assignment,
    parse_value,
    plan,
)

__all__ = [
    "EXECUTORS",
    "FIGURE_NOTEBOOKS",
    "PARAMETERS",
    "RECORD",
    "PlannedRun",
    "SweepResult",
    "SweepSpec",
    "execute_run",
    "is_finished",
    "load_spec",
    "locked",
    "make_executor",
    "parse_assignment",
    "parse_value",
    "plan",
    "read_record",
    "run_folder",
    "run_sweep",
    "store",
]

# --------------------------------------------------------------------------- one run (worker side)


def execute_run(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one grid point's notebooks in a temporary folder and return what it wrote.

    ``job``: ``id``, ``parameters`` (a RunConfig's), ``notebooks``, ``threads`` (torch/BLAS
    threads for the notebooks' kernels, None for their default). Runs on a worker; returns
    the notebooks' rows, timings and ``files`` (path relative to the run's folder -> bytes).
    """
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


#: A run whose worker died this many times is recorded as failed.
MAX_ATTEMPTS = 2


# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    """What a sweep did: its folder, the plan, the records of runs it ran now (``ran``),
    and the ids of runs that were already finished (``reused``)."""

    folder: Path
    runs: list[PlannedRun]
    ran: dict[str, dict] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> dict[str, str]:
        return {i: r.get("error", "") for i, r in self.ran.items() if r.get("status") != "ok"}


def run_sweep(
    spec: SweepSpec,
    *,
    folder: str | Path | None = None,
    executor: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    execute: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    report: bool = True,
) -> SweepResult:
    """Run every unfinished grid point of ``spec`` and write the sweep's aggregate.

    ``threads``: torch threads per run (default: the cores shared among the local workers;
    on a remote scheduler, the workers' own default). ``execute`` runs one job on a worker
    (:func:`execute_run`). Failed runs are recorded and the others go on; a worker that
    dies is replaced and its run tried again, up to :data:`MAX_ATTEMPTS` times.
    """
    from tqdm.auto import tqdm

    folder = Path(folder) if folder else RESULTS / spec.name
    execute = execute or execute_run
    runs = plan(spec)
    start = time.perf_counter()
    with locked(folder):
        claim(folder, spec)
        result = SweepResult(folder, runs)
        todo = []
        for run in runs:
            if is_finished(folder, run):
                result.reused.append(run.id)
            elif run.config is None:
                result.ran[run.id] = store(folder, run, {"status": "failed", "error": run.error})
            else:
                todo.append(run)
        n = min(workers or default_workers(), max(1, len(todo)))
        if threads is None and not scheduler:
            threads = max(1, (os.cpu_count() or 1) // n)
        bar = tqdm(
            total=len(runs),
            initial=len(runs) - len(todo),
            desc=f"sweep {spec.name}",
            unit="run",
            disable=not show_progress(progress),
        )
        attempts = dict.fromkeys((r.id for r in todo), 0)
        # at most `n` runs in flight: when a worker dies, only they are tried again
        window = len(todo) if scheduler and workers is None else n

        def job(run: PlannedRun) -> dict[str, Any]:
            attempts[run.id] += 1
            return {
                "id": run.id,
                "parameters": run.parameters,
                "notebooks": spec.notebooks,
                "threads": threads,
            }

        def finish(run: PlannedRun, outcome: dict | BrokenProcessPool) -> bool:
            """Store a run's outcome; False when it should be tried again."""
            if isinstance(outcome, BrokenProcessPool):
                if attempts[run.id] < MAX_ATTEMPTS:
                    return False
                outcome = {
                    "status": "failed",
                    "error": f"its worker died {MAX_ATTEMPTS} times: {outcome}",
                }
            record = result.ran[run.id] = store(folder, run, outcome)
            if record["status"] != "ok":
                bar.write(f"run {run.id} failed: {record.get('error', '')}")
            bar.update(1)
            return True

        while todo:
            with make_executor(executor, workers=n, scheduler=scheduler) as ex:
                todo = _drain(ex, execute, todo, window, job, finish)
        bar.close()
        result.seconds = time.perf_counter() - start
        if report:
            from .aggregate import write_sweep_report

            write_sweep_report(folder)
    return result


def _drain(
    ex: Executor, execute: Callable, todo: list, window: int, job: Callable, finish: Callable
) -> list:
    """Run ``todo`` on ``ex``, ``window`` at a time, handing each outcome to ``finish``;
    return the runs to try again on a new executor because this one broke."""
    pending, futures, retry = list(todo), {}, []
    broken = False
    while futures or (pending and not broken):
        while pending and not broken and len(futures) < window:
            run = pending.pop(0)
            futures[ex.submit(execute, job(run))] = run
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        for future in done:
            run = futures.pop(future)
            try:
                outcome = future.result()
            except BrokenProcessPool as e:
                broken = True
                outcome = e
            except Exception as e:  # a crash inside the run: record it, go on
                outcome = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            if not finish(run, outcome):
                retry.append(run)
    return retry + pending if broken else retry
