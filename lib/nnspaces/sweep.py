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
import fcntl
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PROFILES, RESULTS, RunConfig, check_folder_name
from .files import write_json

#: The notebooks a sweep runs unless told otherwise (the explorer is interactive).
FIGURE_NOTEBOOKS = (
    "fig1_fcnn_signal_space",
    "fig2_resnet_conv_signal_space",
    "fig3_inverse_images",
)
#: What a grid or the fixed values may set: every RunConfig field but the output folder.
PARAMETERS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name != "out_dir")
EXECUTORS = ("local", "dask")
RECORD = "record.json"
#: A run whose worker died this many times is recorded as failed.
MAX_ATTEMPTS = 2


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: ``grid`` (parameter -> values, every combination runs) over ``profile`` with
    ``fixed`` values, through ``notebooks``; written to ``results/<name>``."""

    name: str
    profile: str = "default"
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    notebooks: tuple[str, ...] = FIGURE_NOTEBOOKS

    def __post_init__(self) -> None:
        check_folder_name("sweep name", self.name)
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; allowed: {', '.join(PROFILES)}")
        for label, keys in (("grid", self.grid), ("fixed", self.fixed)):
            unknown = sorted(set(keys) - set(PARAMETERS))
            if unknown:
                raise ValueError(
                    f"unknown {label} parameter(s) {unknown}; allowed: {', '.join(PARAMETERS)}"
                )
        both = sorted(set(self.grid) & set(self.fixed))
        if both:
            raise ValueError(f"{both} given both in the grid and as fixed values; give one")
        grid = {}
        for key, values in self.grid.items():
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
                raise ValueError(f"grid {key}={values!r} must be a non-empty list of values")
            grid[key] = list(values)
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "fixed", dict(self.fixed))
        from .run import available_notebooks

        names = available_notebooks()
        notebooks = (self.notebooks,) if isinstance(self.notebooks, str) else self.notebooks
        unknown = [n for n in notebooks if n not in names]
        if unknown or not notebooks:
            raise ValueError(f"unknown notebook(s) {unknown}; allowed: {', '.join(names)}")
        object.__setattr__(self, "notebooks", tuple(notebooks))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "profile": self.profile,
            "grid": self.grid,
            "fixed": self.fixed,
            "notebooks": list(self.notebooks),
        }


def load_spec(path: str | Path, **override: Any) -> SweepSpec:
    """A SweepSpec from a TOML file (keys ``name``, ``profile``, ``notebooks``, tables
    ``[grid]`` and ``[fixed]``; ``name`` defaults to the file's stem), with ``override``'s
    values that are not None in place of the file's."""
    path = Path(path)
    try:
        spec = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"sweep file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"sweep file {str(path)!r} is not valid TOML: {e}") from None
    allowed = {f.name for f in dataclasses.fields(SweepSpec)}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")
    spec.setdefault("name", path.stem)
    spec.update({k: v for k, v in override.items() if v is not None})
    return SweepSpec(**spec)


def parse_value(text: str) -> Any:
    """A command-line value: an integer, a float, true/false, else the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_assignment(text: str, *, many: bool) -> tuple[str, Any]:
    """``key=value`` (``many``: ``key=a,b,c`` or an integer range ``key=0..4``, inclusive)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        form = "key=a,b,c or key=0..4" if many else "key=value"
        raise ValueError(f"{text!r} is not {form}")
    key = key.strip()
    if not many:
        return key, parse_value(value)
    bounds = re.fullmatch(r"\s*(-?\d+)\s*\.\.\s*(-?\d+)\s*", value)
    if bounds:
        lo, hi = int(bounds[1]), int(bounds[2])
        if hi < lo:
            raise ValueError(f"{text!r}: the range {lo}..{hi} is empty")
        return key, list(range(lo, hi + 1))
    return key, [parse_value(v) for v in value.split(",")]


@dataclass(frozen=True)
class PlannedRun:
    """One grid point: its folder name ``id``, its ``point`` (the grid's values), its
    ``config``, or ``error`` when those values are invalid."""

    id: str
    point: dict[str, Any]
    config: RunConfig | None
    error: str = ""

    @property
    def parameters(self) -> dict[str, Any] | None:
        """The notebook parameters (out_dir left out: it is the sweep's business)."""
        return None if self.config is None else {**self.config.parameters(), "out_dir": None}


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text) or "x"


def plan(spec: SweepSpec) -> list[PlannedRun]:
    """Every grid point of ``spec`` in order, with its RunConfig or why it has none."""
    runs, keys = [], list(spec.grid)
    for values in itertools.product(*spec.grid.values()):
        point = dict(zip(keys, values, strict=True))
        run_id = "_".join(f"{k}-{_slug(v)}" for k, v in point.items()) or "run"
        given = {**spec.fixed, **point}
        profile = given.pop("profile", spec.profile)
        try:
            config, error = RunConfig.from_profile(profile, **given), ""
        except (ValueError, TypeError) as e:
            config, error = None, f"invalid parameters: {e}"
        runs.append(PlannedRun(run_id, point, config, error))
    ids = [r.id for r in runs]
    twins = sorted({i for i in ids if ids.count(i) > 1})
    if twins:
        raise ValueError(f"grid values that give the same run folder: {twins}; make them distinct")
    return runs


# --------------------------------------------------------------------------- one run (worker side)


def execute_run(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one grid point's notebooks in a temporary folder and return what it wrote.

    ``job``: ``id``, ``parameters`` (a RunConfig's), ``notebooks``, ``threads`` (torch/BLAS
    threads for the notebooks' kernels, None for their default). Runs on a worker; returns
    the notebooks' rows, timings and ``files`` (path relative to the run's folder -> bytes).
    """
    from .report import write_report
    from .run import run_notebooks

    if job.get("threads"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
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


# --------------------------------------------------------------------------- the sweep's folder


def run_folder(folder: Path, run_id: str) -> Path:
    return folder / "runs" / run_id


def read_record(folder: Path, run_id: str) -> dict[str, Any] | None:
    """A run's record.json, or None when it is missing or unreadable."""
    try:
        record = json.loads((run_folder(folder, run_id) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_finished(folder: Path, run: PlannedRun) -> bool:
    """Whether ``run`` finished earlier with these parameters and every file it wrote is
    there at its recorded size (anything less is redone, never half-used)."""
    record = read_record(folder, run.id)
    if not record or record.get("status") != "ok" or record.get("parameters") != run.parameters:
        return False
    base = run_folder(folder, run.id)
    files = record.get("files")
    if not isinstance(files, dict):
        return False
    for rel, size in files.items():
        try:
            if (base / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def store(folder: Path, run: PlannedRun, outcome: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``run``'s files and record into ``runs/<id>``: first into a hidden partial
    folder, the record last, then renamed into place, replacing an earlier attempt."""
    files = outcome.get("files") or {}
    record = {
        "id": run.id,
        "point": run.point,
        "parameters": run.parameters,
        **{k: v for k, v in outcome.items() if k not in ("files", "id")},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "files": {rel: len(data) for rel, data in files.items()},
    }
    runs = folder / "runs"
    partial = runs / f".{run.id}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for rel, data in files.items():
        target = (partial / rel).resolve()
        if not target.is_relative_to(partial.resolve()):
            raise ValueError(f"run {run.id} returned a file outside its folder: {rel!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    write_json(partial / RECORD, record)
    final = run_folder(folder, run.id)
    if final.exists():
        shutil.rmtree(final)
    os.rename(partial, final)
    return record


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s sweep lock, or refuse at once when another sweep holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RuntimeError(
                f"another sweep is running in {folder} ({holder}); wait for it to finish, "
                "or give this one another --name"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


def _claim(folder: Path, spec: SweepSpec) -> None:
    """Make ``folder`` this sweep's (refusing a folder that holds something else) and
    remove what a killed client left half-written."""
    if not (folder / "sweep.json").is_file():
        others = [p.name for p in folder.iterdir() if p.name != ".lock"]
        if others:
            raise ValueError(
                f"{folder} exists and is not a sweep's folder (it holds {sorted(others)[:5]}); "
                "give the sweep another --name"
            )
    write_json(folder / "sweep.json", spec.to_dict())
    for partial in (folder / "runs").glob(".*.partial"):
        shutil.rmtree(partial, ignore_errors=True)


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

                from . import report, run  # noqa: F401
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
    progress: bool = True,
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
        _claim(folder, spec)
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
            disable=not progress,
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
