"""Benchmark the inversion methods: seconds, peak memory and median error for all ten classes.

    .venv/bin/python bench/inversion.py                 # default profile's networks, CPU
    .venv/bin/python bench/inversion.py --device cuda   # the same on a GPU
    .venv/bin/python bench/inversion.py --targets probability --residual log-odds --networks vit

For every network and method it prints the wall time of one call of
:func:`nnspaces.inversion.invert` for all ten digits (the paper's min/max targets), the peak
memory during the call and how much of it was above what the process held before (resident
memory sampled every 5 ms on the CPU; ``torch.cuda.max_memory_allocated`` on a GPU), how
much memory grew between the first and the last iteration (it must stay flat: nothing is
kept across iterations), the
median relative output error beside that of the paper's original "+training" preset, and how
many of the ten images every judge (:mod:`nnspaces.inversion.judges`, classifiers that take no
part in any inversion) reads as the intended digit with every pixel in [0, 1]. After the
methods, per network: the natural pre-images of lesson 5 (min/max targets) or, with
``--targets probability``, the robust search from the class averages and, on each ingredient of
the ladder, from the average of every image (:mod:`nnspaces.inversion.robust`). The trained
networks and the judges come from the checkpoint cache (trained first when missing).
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time

import torch

from nnspaces import paper
from nnspaces.inversion import (
    COMPARED,
    METHODS,
    RESIDUALS,
    applicable,
    invert,
    make_targets,
    method_names,
)
from nnspaces.inversion.crosscheck import BASELINE
from nnspaces.inversion.natural import natural_preimages
from nnspaces.inversion.robust import ROBUST_LADDER, robust_preimages
from nnspaces.inversion.verdicts import verdicts
from nnspaces.models import networks
from nnspaces.runner.config import PROFILES, RunConfig

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MiB = 2**20


def rss() -> float:
    """Resident memory of this process in bytes (Linux), NaN where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except OSError:
        return float("nan")


class PeakMemory:
    """Peak memory above the level at entry: CUDA allocations, or sampled resident memory."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0.0  # highest level during the block
        self.added = 0.0  # ... above the level at entry

    def current(self) -> float:
        if self.device.type == "cuda":
            return float(torch.cuda.memory_allocated(self.device))
        return rss()

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.base = self.current()
        self._stop = threading.Event()
        self._max = self.base
        if self.device.type != "cuda":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._max = max(self._max, rss())

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._max = float(torch.cuda.max_memory_allocated(self.device))
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, rss())
        self.peak = self._max
        self.added = self._max - self.base


def bench_one(
    model,
    targets,
    method,
    *,
    data,
    stats,
    network,
    device,
    steps,
    start=None,
    residual="scores",
    specialise=True,
):
    """One call of invert for all ten classes: (result, seconds, peak MiB, MiB above the
    level at entry, growth MiB between the first and the last iteration)."""
    marks: list[float] = []
    meter = PeakMemory(device)

    def callback(step: int, err: float) -> None:
        marks.append(meter.current())

    with meter:
        t0 = time.perf_counter()
        r = invert(
            model,
            targets,
            method=method,
            start=start,
            data=data,
            stats=stats,
            network=network,
            device=device,
            callback=callback,
            progress=False,
            steps=steps,
            callback_every=10,
            specialise=specialise,
            **({"residual": residual} if residual != "scores" else {}),
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
    growth = (marks[-1] - marks[1]) / MiB if len(marks) > 2 else float("nan")
    return r, seconds, meter.peak / MiB, meter.added / MiB, growth


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default", choices=list(PROFILES))
    ap.add_argument("--device", default=None, help="default: the profile's")
    ap.add_argument(  # the paper's networks unless asked: vit's inversion is not tuned yet
        "--networks", nargs="+", default=list(paper.NETWORKS), choices=list(networks())
    )
    ap.add_argument("--methods", nargs="+", default=list(COMPARED), choices=list(method_names()))
    ap.add_argument("--steps", type=int, default=None, help="override every iterative preset")
    ap.add_argument(
        "--targets",
        default="min-max",
        choices=["min-max", "probability"],
        help="the paper's raw scores, or the follow-up paper's p(c) >= 0.9 from avg-all",
    )
    ap.add_argument(
        "--residual",
        default="scores",
        choices=list(RESIDUALS),
        help="probability targets: solve the raw scores, or one log-odds equation per class",
    )
    ap.add_argument(
        "--plain",
        action="store_true",
        help="run the networks as they are, not their specialised copies "
        "(nnspaces.inversion.specialise)",
    )
    args = ap.parse_args(argv)
    if args.residual != "scores" and args.targets != "probability":
        ap.error("--residual log-odds needs --targets probability")

    ctx = RunConfig.from_profile(
        args.profile, device=args.device, out_dir=os.environ.get("BENCH_OUT", "/tmp/nnspaces-bench")
    ).context()
    device = ctx.device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{ctx.data.describe()}" + (", networks as they are (--plain)" if args.plain else "")
    )
    head = (
        f"{'network':9} {'method':24} {'seconds':>8} {'peak MiB':>9} {'+MiB':>7} "
        f"{'growth MiB':>10} {'median err':>10} {'reached':>7} {'vs original':>11} {'judged':>6}"
    )
    judges = ctx.judges(progress=False)

    def judged(r) -> str:
        v = verdicts(r.image, r.classes, judges)
        return f"{int(v['digit and inside'].sum()):>3}/{len(v)}"

    print(head)
    print("-" * len(head))
    for network in args.networks:
        model = ctx.trained(network, progress=False).model.to(device)
        stats = ctx.score_stats(network)
        by_prob = args.targets == "probability"
        targets = "probability" if by_prob else make_targets(stats, "min-max")
        start = "avg-all" if by_prob else None
        # warm-up: first calls allocate torch's caches, which is not the method's memory
        invert(
            model,
            targets,
            method="descent",
            start=start,
            data=ctx.data,
            device=device,
            progress=False,
            steps=2,
        )
        methods = applicable(model, tuple(args.methods))
        if by_prob:  # the paper's aliases fix their own start images
            methods = [m for m in methods if m in METHODS]
        # the methods that solve this residual, asked of the registry
        methods = [m for m in methods if m in method_names(residual=args.residual)]
        # the original preset first: every other row is compared with it
        order = ([] if by_prob else [BASELINE]) + [m for m in methods if m != BASELINE]
        original = None
        for method in order:
            r, sec, peak, added, growth = bench_one(
                model,
                targets,
                method,
                data=ctx.data,
                stats=stats,
                network=network,
                device=device,
                steps=args.steps,
                start=start,
                residual=args.residual,
                specialise=not args.plain,
            )
            err = r.median_rel_error
            original = err if original is None else original
            if method not in methods:
                continue
            print(
                f"{network:9} {method:24} {sec:8.3f} {peak:9.1f} {added:7.1f} {growth:10.1f} "
                f"{err:10.2e} {r.n_success:>4}/10 "
                + (
                    f"{'min p ' + format(r.prob.min(), '.3f'):>11}"
                    if by_prob
                    else f"{err / original:11.2e}"
                )
                + f" {judged(r):>6}",
                flush=True,
            )
        models = {n: ctx.trained(n, progress=False).model.to(device) for n in args.networks}
        for label, run in natural_rows(network, models, ctx, by_prob):
            r, sec = run
            print(
                f"{network:9} {label:24} {sec:8.3f} {'':9} {'':7} {'':10} "
                f"{r.median_rel_error:10.2e} {r.n_success:>4}/10 {'':11} {judged(r):>6}",
                flush=True,
            )


def natural_rows(network, models, ctx, by_prob):
    """(label, (result, seconds)) of lesson 5's natural search (min/max targets), or of the
    robust search from the class averages and each rung of the ladder from avg-all."""
    if not by_prob:
        t0 = time.perf_counter()
        found = natural_preimages(
            models, network, data=ctx.data, stats=ctx.score_stats(network), device=ctx.device
        )
        yield "natural (lesson 5)", (found.result, time.perf_counter() - t0)
        return
    others = {o: m for o, m in models.items() if o != network}
    runs = [("robust avg-img", "none", "avg-img")]
    runs += [
        (f"robust avg-all {r}", r, "avg-all")
        for r in ROBUST_LADDER
        if others or r != "ensemble" and r != "all"
    ]
    for label, recipe, start in runs:
        run = robust_preimages(
            models[network], "probability", data=ctx.data, start=start, network=network,
            ingredients=ROBUST_LADDER[recipe], ensemble=others, device=ctx.device,
        )  # fmt: skip
        yield label, (run.result, run.seconds)


if __name__ == "__main__":
    main()
