"""Parameter sweeps: many runs of the notebooks, on a process pool or a Dask cluster.

    python -m nnspaces sweep sweeps/seeds.toml              # what `make sweep` does
    python -m nnspaces sweep --name try --profile smoke --grid seed=0..3 --set quick=true
    python -m nnspaces sweep sweeps/seeds.toml --executor dask --workers 2
    python -m nnspaces sweep sweeps/seeds.toml --executor dask --scheduler tcp://host:8786

A :class:`SweepSpec` is a grid over the notebooks' parameters (any field of
:class:`~nnspaces.config.RunConfig` but ``out_dir``) on top of a profile and some fixed
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
    table.csv, summary.csv, index.html, figures/    the aggregate (:mod:`nnspaces.aggregate`)

A run counts as finished when its ``record.json`` says ``ok``, has the run's parameters, and
every file it lists is there with its size; anything else (a failed run, a half-copied
``runs/.<run>.partial`` folder left by a killed client) is redone when the sweep runs again.
A lock file keeps two sweeps out of one folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RESULTS
from ..progress import show_progress
from .executors import EXECUTORS, default_workers, execute_run, make_executor
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
            from ..aggregate import write_sweep_report

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


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="a TOML sweep file (sweeps/*.toml)")
    parser.add_argument("--name", help="the sweep's folder under results/ (default: file stem)")
    parser.add_argument("--profile", help="the profile the runs start from (default: default)")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a grid parameter: seed=0..4, dataset=mnist-embedded,fashion-mnist",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a value every run uses, e.g. quick=true",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NOTEBOOK",
        help="run only this notebook (default: the figure notebooks)",
    )
    parser.add_argument("--executor", default="local", choices=EXECUTORS)
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per core)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: cores / workers)"
    )
    parser.add_argument("--scheduler", help="a Dask scheduler's address (with --executor dask)")
    parser.add_argument("--out-dir", help="the sweep's folder (default: results/<name>)")


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    grid = dict(parse_assignment(g, many=True) for g in args.grid)
    fixed = dict(parse_assignment(s, many=False) for s in args.set)
    override = {
        "profile": args.profile,
        "name": args.name,
        "notebooks": tuple(args.only) if args.only else None,
    }
    if args.file:
        spec = load_spec(args.file, **override)
        if grid or fixed:
            spec = dataclasses.replace(
                spec, grid={**spec.grid, **grid}, fixed={**spec.fixed, **fixed}
            )
        return spec
    if not args.name:
        raise ValueError("give a sweep file or --name")
    return SweepSpec(**{k: v for k, v in override.items() if v is not None}, grid=grid, fixed=fixed)


def main(args: argparse.Namespace) -> int:
    """``python -m nnspaces sweep``: run the sweep, print what failed, exit 1 if any did."""
    spec = spec_from_args(args)
    result = run_sweep(
        spec,
        folder=args.out_dir,
        executor=args.executor,
        workers=args.workers,
        threads=args.threads,
        scheduler=args.scheduler,
    )
    ok = len(result.runs) - len(result.failed)
    print(
        f"{len(result.runs)} runs: {len(result.ran)} ran now, {len(result.reused)} were "
        f"already finished; {ok} ok, {len(result.failed)} failed ({result.seconds:.0f} s)"
    )
    for run_id, error in result.failed.items():
        print(f"  FAILED {run_id}: {error}", file=sys.stderr)
    print(f"report: {result.folder / 'index.html'}")
    return 1 if result.failed else 0
