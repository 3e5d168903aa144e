"""``python -m nnspaces``: the command line, argument parsing only (above everything else).

    python -m nnspaces run --profile default --jobs 2          # the paper's figures
    python -m nnspaces run --kind lesson --jobs 2              # the lessons, into the same run
    python -m nnspaces run --profile smoke --set dataset=fashion-mnist --set quick=true
    python -m nnspaces sweep sweeps/seeds.toml                 # many runs
    python -m nnspaces readme --run results/default            # the README's generated block
    python -m nnspaces student --out student                   # the lessons without solutions

A relative ``--out-dir`` means the folder the command was started from: the run's config
resolves it once (the notebooks' kernels run in notebooks/).
Heavy modules (torch, papermill) are imported only by the command that needs them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .paths import RESULTS, STUDENT_DIR

KINDS = ("figure", "lesson", "tool")


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
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
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a value every run uses"
    )
    parser.add_argument(
        "--only", action="append", metavar="NOTEBOOK", help="run only this notebook"
    )
    parser.add_argument("--executor", default="local", choices=("local", "dask"))
    parser.add_argument(
        "--workers", type=int, default=None, help="worker processes (default: one per core)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads per run (default: cores / workers)"
    )
    parser.add_argument("--scheduler", help="a Dask scheduler's address (with --executor dask)")
    parser.add_argument("--out-dir", help="the sweep's folder (default: results/<name>)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nnspaces", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks with papermill")
    run.add_argument("--profile", default="default", help="a profile's name (default: default)")
    run.add_argument("--only", action="append", metavar="NAME", help="run only this notebook")
    run.add_argument(
        "--kind",
        action="append",
        choices=KINDS,
        help="run the notebooks of this kind (default: figure and tool; repeatable)",
    )
    run.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the profile's)")
    run.add_argument("--seed", type=int, default=None, help="default: the profile's")
    run.add_argument("--out-dir", default=None, help="default: results/<profile>")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other run parameter, e.g. dataset=fashion-mnist, quick=true, epochs=3",
    )
    run.add_argument("--jobs", type=int, default=1, help="notebooks at a time (default 1)")
    _sweep_arguments(sub.add_parser("sweep", help="run the notebooks over a parameter grid"))
    readme = sub.add_parser("readme", help="write the README's result tables from a run")
    readme.add_argument("--run", default=str(RESULTS / "default"), help="a run's folder")
    student = sub.add_parser("student", help="write the student edition (no solutions)")
    student.add_argument("--out", default=str(STUDENT_DIR), help="its folder (default: student/)")
    return parser


def _run(args: argparse.Namespace) -> int:
    from .runner.config import RunConfig
    from .runner.execute import format_table, key_numbers_text, run_notebooks
    from .runner.notebooks import names_of_kind
    from .runner.report import write_report
    from .runner.sweep.grid import parse_assignment

    given = dict(parse_assignment(s, many=False) for s in args.set)
    if "profile" in given:
        raise ValueError("the profile is --profile NAME, not --set profile=...")
    for flag in ("device", "seed", "out_dir"):
        if flag in given and getattr(args, flag) is not None:
            option = "--" + flag.replace("_", "-")
            raise ValueError(f"{flag} given twice ({option} and --set {flag}=...)")
        given.setdefault(flag, getattr(args, flag))
    config = RunConfig.from_profile(args.profile, **given)
    only = args.only or names_of_kind(*(args.kind or ("figure", "tool")))
    rows = run_notebooks(config, only=only, jobs=args.jobs)
    print(format_table(rows))
    print(key_numbers_text(config.output_dir))
    print(f"report: {write_report(config.output_dir)}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _sweep(args: argparse.Namespace) -> int:
    import dataclasses

    from .runner.sweep.engine import run_sweep
    from .runner.sweep.grid import SweepSpec, load_spec, parse_assignment

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
    elif not args.name:
        raise ValueError("give a sweep file or --name")
    else:
        spec = SweepSpec(
            **{k: v for k, v in override.items() if v is not None}, grid=grid, fixed=fixed
        )
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


def _readme(args: argparse.Namespace) -> int:
    from .runner.readme import update

    print(f"updated {update(args.run)}")
    return 0


def _student(args: argparse.Namespace) -> int:
    from .teaching.student import write_student_edition

    out = Path(args.out)
    written = write_student_edition(out)
    print(f"student edition: {len(written)} notebooks in {out}/")
    return 0


COMMANDS = {"run": _run, "sweep": _sweep, "readme": _readme, "student": _student}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, RuntimeError, OSError) as e:
        parser.error(str(e))
    return 2  # not reached: parser.error exits


if __name__ == "__main__":
    sys.exit(main())
