"""Execute every notebook with papermill for a named profile, and print a summary table.

    python -m nnspaces run --profile default            # what `make figures` does
    python -m nnspaces run --profile smoke --only fig1_fcnn_signal_space

Executed notebooks go to ``results/<profile>/notebooks/``; the notebooks themselves write
figures, metrics and models under ``results/<profile>/``. A summary of the run is saved as
``results/<profile>/run.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .config import PROFILES, REPO_ROOT, RESULTS
from .report import write_report

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
#: Notebooks in the order they run (later ones reuse the networks earlier ones trained).
NOTEBOOKS = (
    "fig1_fcnn_signal_space",
    "fig2_resnet_conv_signal_space",
    "fig3_inverse_images",
    "explore",
)
KERNEL_NAME = "nnspaces"  # registered from the venv by `make setup`

# the numbers the summary table shows for each notebook's metrics file
_KEY_NUMBERS = {
    "fig1": ("test_accuracy", "condition_number"),
    "fig2": ("test_accuracy", "condition_number"),
    "fig3": ("summary",),
}


def available_notebooks() -> list[str]:
    """Names of the notebooks the runner knows that exist in ``notebooks/``."""
    return [n for n in NOTEBOOKS if (NOTEBOOK_DIR / f"{n}.ipynb").is_file()]


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return KERNEL_NAME if KERNEL_NAME in specs else "python3"


def run_notebooks(
    profile: str,
    *,
    only: list[str] | None = None,
    device: str = "cpu",
    out_dir: Path | None = None,
    extra: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the notebooks (all, or ``only`` those) with ``profile``'s parameters.

    Returns one row per notebook: name, status ("ok" or the error), seconds, output path.
    A failing notebook does not stop the others.
    """
    import papermill as pm

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    names = available_notebooks()
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"unknown notebook(s) {unknown}; allowed: {', '.join(names)}")
        names = [n for n in names if n in only]
    out_dir = Path(out_dir) if out_dir else RESULTS / profile
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    params = {
        "profile": profile,
        **PROFILES[profile],
        "device": device,
        "out_dir": str(out_dir),
        **(extra or {}),
    }
    kernel = _kernel_name()
    rows = []
    for name in names:
        source = NOTEBOOK_DIR / f"{name}.ipynb"
        output = out_dir / "notebooks" / f"{name}.ipynb"
        declared = pm.inspect_notebook(str(source))  # pass each notebook only what it declares
        start = time.perf_counter()
        try:
            pm.execute_notebook(
                source,
                output,
                parameters={k: v for k, v in params.items() if k in declared},
                kernel_name=kernel,
                cwd=str(NOTEBOOK_DIR),
                progress_bar=progress,
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
    summary = {"profile": profile, "parameters": params, "notebooks": rows}
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return rows


def key_numbers(out_dir: Path) -> dict[str, str]:
    """A short string of each figure's headline numbers, read from its metrics JSON."""
    numbers = {}
    for fig, keys in _KEY_NUMBERS.items():
        path = out_dir / "metrics" / f"{fig}.json"
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())
        parts = []
        for k in keys:
            v = metrics.get(k)
            if isinstance(v, float):
                parts.append(f"{k}={v:.4g}")
            elif isinstance(v, str):
                parts.append(v)
        numbers[fig] = ", ".join(parts)
    return numbers


def format_table(rows: list[dict[str, Any]], numbers: dict[str, str]) -> str:
    """The summary as a plain-text table."""
    lines = [f"{'notebook':32} {'status':8} {'seconds':>8}  key numbers"]
    for r in rows:
        fig = r["notebook"].split("_")[0]
        status = "ok" if r["status"] == "ok" else "FAILED"
        lines.append(f"{r['notebook']:32} {status:8} {r['seconds']:8.1f}  {numbers.get(fig, '')}")
        if status != "ok":
            lines.append(f"    {r['status']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnspaces", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks with papermill")
    run.add_argument("--profile", default="default", choices=sorted(PROFILES))
    run.add_argument("--only", action="append", metavar="NAME", help="run only this notebook")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    run.add_argument("--out-dir", type=Path, default=None, help="default: results/<profile>")
    args = parser.parse_args(argv)

    out_dir = args.out_dir or RESULTS / args.profile
    try:
        rows = run_notebooks(args.profile, only=args.only, device=args.device, out_dir=out_dir)
    except ValueError as e:
        parser.error(str(e))
    print(format_table(rows, key_numbers(out_dir)))
    print(f"report: {write_report(out_dir)}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
