"""Benchmark sweeps: serial against the local process pool against Dask, and kill-and-resume.

    .venv/bin/python bench/sweep.py                    # 4 runs of fig1 on the smoke profile
    .venv/bin/python bench/sweep.py --runs 6 --only fig2_resnet_conv_signal_space

The same grid (``--runs`` seeds of the smoke profile through one notebook) runs three ways,
each with an empty checkpoint cache so that every run trains its networks: serially (one
worker with every core), on the local process pool and on a Dask ``LocalCluster`` (``--workers``
workers, the cores shared among them). For each it prints the wall time, the notebooks' own
time summed over the runs, the overhead per run (wall time minus the notebooks' time, per
run, counting the workers' parallelism), and the wall time against the serial one.

Then it kills a sweep's client (SIGKILL to its process group) once the first run has been
stored, runs the same sweep again, and prints which runs the second sweep reused and which
it ran: only the unfinished ones may run again.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nnspaces.runner.sweep.engine import SweepSpec, run_sweep


def timed_sweep(spec: SweepSpec, folder: Path, cache: Path, **how) -> dict:
    os.environ["NNSPACES_CACHE"] = str(cache)  # the workers and their kernels inherit it
    start = time.perf_counter()
    result = run_sweep(spec, folder=folder, progress=False, **how)
    wall = time.perf_counter() - start
    if result.failed:
        raise SystemExit(f"runs failed: {result.failed}")
    notebooks = sum(r["notebook_seconds"] for r in result.ran.values())
    workers = how.get("workers") or 1
    return {
        "wall": wall,
        "notebooks": notebooks,
        "overhead": (wall - notebooks / workers) / len(result.ran),
    }


def kill_and_resume(args, tmp: Path) -> tuple[list[str], list[str], list[str]]:
    """(runs stored before the kill, runs the second sweep reused, runs it ran)."""
    folder = tmp / "killed"
    command = [
        sys.executable,
        "-m",
        "nnspaces",
        "sweep",
        "--name",
        "killed",
        "--profile",
        "smoke",
        "--grid",
        f"seed=0..{args.runs - 1}",
        "--only",
        args.only,
        "--workers",
        "1",
        "--out-dir",
        str(folder),
    ]
    env = {**os.environ, "NNSPACES_CACHE": str(tmp / "cache-killed")}
    client = subprocess.Popen(
        command,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    runs = folder / "runs"
    while client.poll() is None and not any(p.name[0] != "." for p in runs.glob("*")):
        time.sleep(0.2)
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()
    before = sorted(p.name for p in runs.glob("*") if not p.name.startswith("."))
    records = {
        p.name: json.loads((p / "record.json").read_text())["finished"]
        for p in runs.glob("*")
        if not p.name.startswith(".")
    }
    spec = SweepSpec(
        "killed", profile="smoke", grid={"seed": list(range(args.runs))}, notebooks=(args.only,)
    )
    os.environ["NNSPACES_CACHE"] = str(tmp / "cache-killed")
    result = run_sweep(spec, folder=folder, workers=1, progress=False)
    for run_id, finished in records.items():  # the reused runs' records are untouched
        assert json.loads((runs / run_id / "record.json").read_text())["finished"] == finished
    return before, sorted(result.reused), sorted(result.ran)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="fig1_fcnn_signal_space")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    spec = SweepSpec(
        "bench", profile="smoke", grid={"seed": list(range(args.runs))}, notebooks=(args.only,)
    )
    tmp = Path(tempfile.mkdtemp(prefix="nnspaces-bench-sweep-"))
    try:
        modes = {
            "serial": {"workers": 1, "threads": cores},
            "local": {"workers": args.workers, "threads": max(1, cores // args.workers)},
            "dask": {
                "workers": args.workers,
                "threads": max(1, cores // args.workers),
                "executor": "dask",
            },
        }
        rows = {}
        for name, how in modes.items():
            rows[name] = timed_sweep(spec, tmp / name, tmp / f"cache-{name}", **how)
            print(f"{name} done in {rows[name]['wall']:.1f} s", flush=True)
        print(f"\n{args.runs} runs of {args.only} (smoke profile), {cores} cores\n")
        print(
            f"{'executor':9} {'workers':>7} {'threads':>7} {'wall s':>8} {'notebooks s':>11} "
            f"{'overhead/run s':>14} {'vs serial':>9}"
        )
        for name, r in rows.items():
            how = modes[name]
            print(
                f"{name:9} {how['workers']:7d} {how['threads']:7d} {r['wall']:8.1f} "
                f"{r['notebooks']:11.1f} {r['overhead']:14.2f} "
                f"{r['wall'] / rows['serial']['wall']:9.2f}"
            )
        before, reused, ran = kill_and_resume(args, tmp)
        ok = set(reused) == set(before) and not set(ran) & set(before)
        print(
            f"\nkilled the client after {before} were stored; the second sweep reused "
            f"{reused} and ran {ran}: {'only the unfinished runs' if ok else 'WRONG'}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
