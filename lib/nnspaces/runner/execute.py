"""Execute every notebook with papermill for one run configuration, and print a summary table.

    python -m nnspaces run --profile default            # what `make figures` does
    python -m nnspaces run --profile smoke --only fig1_fcnn_signal_space --seed 3
    python -m nnspaces sweep sweeps/seeds.toml          # many runs: nnspaces.runner.sweep

Each notebook gets exactly the parameters of one :class:`~nnspaces.runner.config.RunConfig` (the
profile's values, with those given on the command line in their place). Executed notebooks go
to ``<out_dir>/notebooks/``; the notebooks themselves write figures, metrics and models under
``<out_dir>`` (``results/<profile>`` by default). A summary of the run is saved as
``<out_dir>/run.json``, and the report as ``<out_dir>/index.html``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import uuid
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

from ..files import write_json
from ..paths import NOTEBOOK_DIR
from ..progress import batch_run, finish, progress_bar, show_progress
from .config import RunConfig
from .notebooks import runner_notebooks
from .numbers import key_numbers, read_metrics
from .readme import run_times

KERNEL_NAME = "nnspaces"  # registered from the venv by `make setup`
#: The variables that set a kernel's torch and BLAS threads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_notebooks(folder: str | Path | None = None) -> list[str]:
    """Names of the notebooks the runner knows that exist in ``folder`` (``notebooks/``)."""
    folder = Path(NOTEBOOK_DIR if folder is None else folder)
    return [n for n in runner_notebooks() if (folder / f"{n}.ipynb").is_file()]


#: The longest socket prefix used for IPC (a Unix socket's path has room for about 100 bytes).
IPC_PATH_LIMIT = 90


def _ipc_kernel_manager():
    """A jupyter_client KernelManager whose kernel talks over IPC sockets in the temporary
    folder instead of TCP on localhost: the same kernel, without ipykernel's warning that TCP
    runs unencrypted (printed once per notebook on the console) and without open ports."""
    # nbclient's own default is the asynchronous manager: a synchronous one starts kernels
    # through jupyter_core's runner thread, which a worker forked after an in-process run
    # inherits without its thread (and waits on forever)
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            prefix = Path(tempfile.gettempdir()) / f"nnspaces-kernel-{uuid.uuid4().hex[:12]}"
            if len(str(prefix)) > IPC_PATH_LIMIT:  # a socket's path is limited: stay on TCP
                super().__init__(**kwargs)
            else:
                super().__init__(transport="ipc", ip=str(prefix), **kwargs)  # sockets prefix-N

    return IPCKernelManager


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return KERNEL_NAME if KERNEL_NAME in specs else "python3"


def run_notebooks(
    config: RunConfig,
    *,
    only: list[str] | None = None,
    progress: bool | None = None,
    notebook_dir: str | Path | None = None,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Run the notebooks (all, or ``only`` those) with ``config``'s parameters.

    The kernels run as a batch run (:func:`nnspaces.progress.batch_run`): the library shows
    no progress bars in them. ``progress``: papermill's bar over the cells, on this side
    (default: :func:`nnspaces.progress.show_progress`); with ``jobs`` > 1 a bar over the
    notebooks instead. ``jobs``: notebooks run at a time, each kernel with ``cores / jobs``
    torch and BLAS threads, the longest first (by the times in ``run.json`` of the last run
    into the same folder). Small networks and batches keep a second thread busy only part of
    the time, so on 2 cores two notebooks at a time finish sooner than one after the other.

    Returns one row per notebook, in the runner's order: name, status ("ok" or the error),
    seconds, output path. A failing notebook does not stop the others. ``run.json`` keeps
    them with the parameters, ``jobs`` and the whole run's wall-clock ``seconds``.
    """
    import papermill as pm

    if not isinstance(config, RunConfig):
        raise TypeError(f"run_notebooks needs a RunConfig, got {type(config).__name__}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a positive integer")
    notebook_dir = Path(NOTEBOOK_DIR if notebook_dir is None else notebook_dir)
    names = available_notebooks(notebook_dir)
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"unknown notebook(s) {unknown}; allowed: {', '.join(names)}")
        names = [n for n in names if n in only]
    out_dir = config.output_dir
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    params = config.parameters()
    started = time.perf_counter()
    parallel = jobs > 1 and len(names) > 1
    cell_bar = show_progress(progress) and not parallel  # decided outside the kernels' batch run
    threads = max(1, (os.cpu_count() or 1) // jobs) if parallel else None
    kernel = _kernel_name()
    todo = {}
    for name in names:
        source = notebook_dir / f"{name}.ipynb"
        declared = pm.inspect_notebook(str(source))  # pass each notebook only what it declares
        todo[name] = {
            "notebook": name,
            "source": str(source),
            "output": str(out_dir / "notebooks" / f"{name}.ipynb"),
            "parameters": {k: v for k, v in params.items() if k in declared},
            "kernel": kernel,
            "cwd": str(notebook_dir),
            "cell_bar": cell_bar,
            "threads": threads,
        }
    if parallel:
        from .pools import make_executor

        last = _last_seconds(out_dir)
        order = sorted(names, key=lambda n: -last.get(n, math.inf))
        bar = progress_bar(
            len(names), desc=f"notebooks, {jobs} at a time", progress=progress, unit="notebook"
        )
        done = {}
        with make_executor("local", workers=jobs) as pool:
            futures = {pool.submit(execute_notebook, todo[n]): n for n in order}
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                bar.update(1)
        finish(bar)
        rows = [done[n] for n in names]
    else:
        rows = [execute_notebook(todo[n]) for n in names]
    write_json(
        out_dir / "run.json",
        {
            "profile": config.profile,
            "parameters": params,
            "notebooks": _with_earlier(out_dir, params, rows),
            "jobs": jobs if parallel else 1,
            "seconds": round(time.perf_counter() - started, 1),  # the whole run, wall clock
        },
    )
    return rows


def _with_earlier(out_dir: Path, params: dict, rows: list[dict]) -> list[dict]:
    """``rows``, after the rows of the last run into ``out_dir`` for the notebooks this run did
    not execute, when that run had the same parameters (``make figures`` then ``make lessons``
    make one run of every notebook); in the runner's order."""
    try:
        last = json.loads((out_dir / "run.json").read_text())
        earlier = last["notebooks"] if last.get("parameters") == params else []
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        earlier = []
    ran = {r["notebook"] for r in rows}
    kept = [r for r in earlier if isinstance(r, dict) and r.get("notebook") not in ran]
    order = {n: i for i, n in enumerate(runner_notebooks())}
    return sorted([*kept, *rows], key=lambda r: order.get(r.get("notebook"), len(order)))


def execute_notebook(job: dict[str, Any]) -> dict[str, Any]:
    """Run one notebook with papermill (``job``: one of :func:`run_notebooks`' jobs, in this
    process or a worker's) and return its row."""
    import papermill as pm

    if job["threads"]:  # a worker's own environment: its kernels inherit it
        for var in THREAD_VARIABLES:
            os.environ[var] = str(job["threads"])
    start = time.perf_counter()
    try:
        with batch_run():  # the kernel inherits the environment
            pm.execute_notebook(
                job["source"],
                job["output"],
                parameters=job["parameters"],
                kernel_name=job["kernel"],
                kernel_manager_class=_ipc_kernel_manager(),
                cwd=job["cwd"],
                progress_bar=job["cell_bar"],
            )
        status = "ok"
    except Exception as e:  # report every failure in the table, run the rest
        status = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
    return {
        "notebook": job["notebook"],
        "status": status,
        "seconds": round(time.perf_counter() - start, 1),
        "output": job["output"],
    }


def _last_seconds(out_dir: Path) -> dict[str, float]:
    """Each notebook's seconds in the last run into ``out_dir`` (none if there is none, or
    its ``run.json`` cannot be read: the order is only a schedule)."""
    try:
        return {str(name): float(s) for name, s in run_times(out_dir).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def key_numbers_text(out_dir: Path) -> str:
    """The run's accuracies and condition numbers beside the paper's, one line each."""
    metrics = read_metrics(out_dir)
    return "\n".join(
        f"{k.label:45} {k.text:>8}   paper {k.reference.value:g}" for k in key_numbers(metrics)
    )


def format_table(rows: list[dict[str, Any]]) -> str:
    """The notebooks' status and times as a plain-text table."""
    lines = [f"{'notebook':32} {'status':8} {'seconds':>8}"]
    for r in rows:
        status = "ok" if r["status"] == "ok" else "FAILED"
        lines.append(f"{r['notebook']:32} {status:8} {r['seconds']:8.1f}")
        if status != "ok":
            lines.append(f"    {r['status']}")
    return "\n".join(lines)
