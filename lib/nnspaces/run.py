"""Execute every notebook with papermill for one run configuration, and print a summary table.

    python -m nnspaces run --profile default            # what `make figures` does
    python -m nnspaces run --profile smoke --only fig1_fcnn_signal_space --seed 3
    python -m nnspaces sweep sweeps/seeds.toml          # many runs: see nnspaces.sweep

Each notebook gets exactly the parameters of one :class:`~nnspaces.config.RunConfig` (the
profile's values, with those given on the command line in their place). Executed notebooks go
to ``<out_dir>/notebooks/``; the notebooks themselves write figures, metrics and models under
``<out_dir>`` (``results/<profile>`` by default). A summary of the run is saved as
``<out_dir>/run.json``, and the report as ``<out_dir>/index.html``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .config import PROFILES, REPO_ROOT, RESULTS, RunConfig
from .files import write_json
from .metrics import key_numbers, read_metrics
from .progress import batch_run, show_progress

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: Notebooks in the order they run (later ones reuse the networks earlier ones trained).
NOTEBOOKS = (
    "fig1_fcnn_signal_space",
    "fig2_resnet_conv_signal_space",
    "fig3_inverse_images",
    "lesson4_exact_inversion",
    "lesson5_priors_and_natural_images",
    "lesson6_followup_paper",
    "explore",
)
KERNEL_NAME = "nnspaces"  # registered from the venv by `make setup`


def available_notebooks(folder: str | Path | None = None) -> list[str]:
    """Names of the notebooks the runner knows that exist in ``folder`` (``notebooks/``)."""
    folder = Path(NOTEBOOK_DIR if folder is None else folder)
    return [n for n in NOTEBOOKS if (folder / f"{n}.ipynb").is_file()]


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
) -> list[dict[str, Any]]:
    """Run the notebooks (all, or ``only`` those) with ``config``'s parameters.

    The kernels run as a batch run (:func:`nnspaces.progress.batch_run`): the library shows
    no progress bars in them. ``progress``: papermill's bar over the cells, on this side
    (default: :func:`nnspaces.progress.show_progress`).

    Returns one row per notebook: name, status ("ok" or the error), seconds, output path.
    A failing notebook does not stop the others.
    """
    import papermill as pm

    if not isinstance(config, RunConfig):
        raise TypeError(f"run_notebooks needs a RunConfig, got {type(config).__name__}")
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
    kernel = _kernel_name()
    cell_bar = show_progress(progress)  # decided here, outside the batch run of the kernels
    rows = []
    for name in names:
        source = notebook_dir / f"{name}.ipynb"
        output = out_dir / "notebooks" / f"{name}.ipynb"
        declared = pm.inspect_notebook(str(source))  # pass each notebook only what it declares
        start = time.perf_counter()
        try:
            with batch_run():  # the kernel inherits the environment
                pm.execute_notebook(
                    source,
                    output,
                    parameters={k: v for k, v in params.items() if k in declared},
                    kernel_name=kernel,
                    cwd=str(notebook_dir),
                    progress_bar=cell_bar,
                )
            status = "ok"
        except Exception as e:  # report every failure in the table, run the rest
            status = f"failed: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}"
        rows.append(
            {
                "notebook": name,
                "status": status,
                "seconds": round(time.perf_counter() - start, 1),
                "output": str(output),
            }
        )
    write_json(
        out_dir / "run.json", {"profile": config.profile, "parameters": params, "notebooks": rows}
    )
    return rows


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnspaces", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks with papermill")
    run.add_argument("--profile", default="default", choices=list(PROFILES))
    run.add_argument("--only", action="append", metavar="NAME", help="run only this notebook")
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the profile's)")
    run.add_argument("--seed", type=int, default=None, help="default: the profile's")
    run.add_argument("--out-dir", default=None, help="default: results/<profile>")
    from . import sweep

    sweep.add_arguments(sub.add_parser("sweep", help="run the notebooks over a parameter grid"))
    readme = sub.add_parser("readme", help="write the README's result tables from a run")
    readme.add_argument("--run", default=str(RESULTS / "default"), help="a run's folder")
    student = sub.add_parser("student", help="write the student edition (no solutions)")
    student.add_argument("--out", default="student", help="its folder (default: student/)")
    args = parser.parse_args(argv)
    if args.command == "student":
        from .student import write_student_edition

        written = write_student_edition(args.out)
        print(f"student edition: {len(written)} notebooks in {Path(args.out)}/")
        return 0
    if args.command == "readme":
        from .readme import update

        try:
            print(f"updated {update(args.run)}")
        except (OSError, ValueError) as e:
            parser.error(str(e))
        return 0
    if args.command == "sweep":
        try:
            return sweep.main(args)
        except (ValueError, RuntimeError) as e:
            parser.error(str(e))

    from .report import write_report

    try:
        config = RunConfig.from_profile(
            args.profile, device=args.device, seed=args.seed, out_dir=args.out_dir
        )
        rows = run_notebooks(config, only=args.only)
    except ValueError as e:
        parser.error(str(e))
    print(format_table(rows))
    print(key_numbers_text(config.output_dir))
    print(f"report: {write_report(config.output_dir)}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
