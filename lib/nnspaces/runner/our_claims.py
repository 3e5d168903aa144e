"""The registered claims of Figure 3 and lesson 4 (those of lessons 5 and 6:
:mod:`.lesson_claims`): every qualitative statement the notebooks make about a result.

Each is a :class:`~.claims.Claim`: the numbers that decide it (read from the saved metrics),
a predicate over them and a sentence for each outcome. The thresholds that turn a word into a
number ("to rounding error", "much closer", "a few steps", "visibly") are named constants here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import paper
from .claims import Claim, register
from .metrics import Fig3Metrics, Lesson4Metrics

#: "To rounding error": a relative output error at most this (float64 solutions reach 1e-12).
ROUNDING = 1e-9
#: "Much closer": at least this many times smaller a median error.
MUCH = 10.0
#: "A few steps" of a polish.
POLISH_STEPS = 3
#: "Differ visibly": the largest difference is at least this share of the pixel range.
VISIBLE = 0.05
#: An unchanged mean target probability: within this.
SAME_PROB = 0.05


def _list(items: Any) -> str:
    return ", ".join(map(str, items)) or "none"


def _nets_with(method: str):
    return lambda m: [n for n, by in m.results.items() if method in by]


# 1. exact and newton on the invertible networks (fig3, lesson 4)
def _reach(m: Any, net: str) -> dict:
    by = m.results[net]
    if "exact" not in by or "newton" not in by:
        return None
    err = {k: np.asarray(by[k]["rel_error"], dtype=float) for k in ("exact", "newton")}
    close = {k: np.nan_to_num(e, nan=np.inf) <= ROUNDING for k, e in err.items()}
    classes = by["exact"]["classes"]
    left = [c for i, c in enumerate(classes) if not (close["exact"][i] and close["newton"][i])]
    return {
        "n": len(classes),
        "exact": int(close["exact"].sum()),
        "newton": int(close["newton"].sum()),
        "worst_exact": float(np.nanmax(err["exact"])),
        "worst_newton": float(np.nanmax(err["newton"])),
        "left": _list(left),
    }


_REACH = dict(
    says="exact and newton reach the targets to rounding error on the invertible networks",
    numbers=_reach,
    test=lambda x: x["exact"] == x["n"] and x["newton"] == x["n"],
    holds="`exact` and `newton` reach all {n} targets to rounding error (largest relative "
    "errors {worst_exact:.1e} and {worst_newton:.1e}).",
    fails="`exact` reaches {exact}/{n} targets to rounding error (largest relative error "
    "{worst_exact:.1e}) and `newton` {newton}/{n} (largest {worst_newton:.1e}); digits "
    "not reached by both: {left}.",
    subjects=_nets_with("exact"),
)
register(Claim("fig3.exact_newton_reach", "fig3_inverse_images", Fig3Metrics, **_REACH))
register(Claim("lesson4.exact_newton_reach", "lesson4_exact_inversion", Lesson4Metrics, **_REACH))


# 2. what the paper's "+training" does to the images it misreads (fig3)
def _training(m: Any, net: str) -> dict | None:
    methods, by = paper.FIGURE3_METHODS.get(net), m.results.get(net, {})
    if methods is None:
        return None
    before, after = [], []
    for c in range(10):
        start = methods[c].removesuffix("+training")
        if start not in by or f"{start}+training" not in by:
            return None
        for runs, name in ((before, start), (after, f"{start}+training")):
            r = by[name]
            i = list(r["classes"]).index(c)
            runs.append((r["predicted"][i] == c, r["prob"][i]))
    ok0 = {c for c, (ok, _) in enumerate(before) if ok}
    ok1 = {c for c, (ok, _) in enumerate(after) if ok}
    return {
        "p0": float(np.mean([p for _, p in before])),
        "p1": float(np.mean([p for _, p in after])),
        "ok0": len(ok0),
        "ok1": len(ok1),
        "gained": _list(sorted(ok1 - ok0)),
        "lost": _list(sorted(ok0 - ok1)),
    }


register(
    Claim(
        "fig3.training_keeps_reading",
        "fig3_inverse_images",
        Fig3Metrics,
        says="the paper's +training leaves what the network reads in its images as it is",
        numbers=_training,
        test=lambda x: x["gained"] == x["lost"] == "none" and abs(x["p1"] - x["p0"]) < SAME_PROB,
        holds="the paper's 100 '+training' steps leave what the network reads as it was: "
        "{ok0}/10 of its start images read as the digit before and after, mean p(c) "
        "{p0:.2f} -> {p1:.2f}.",
        fails="the paper's 100 '+training' steps change what the network reads: digits read "
        "correctly {ok0}/10 -> {ok1}/10 (now correct: {gained}; now misread: {lost}), mean "
        "p(c) {p0:.2f} -> {p1:.2f}.",
        subjects=lambda m: [n for n in m.results if n in paper.FIGURE3_METHODS],
    )
)


# 3. our best-box images against the paper's picks (fig3)
def _closer(m: Any, net: str) -> dict | None:
    methods, by = paper.FIGURE3_METHODS.get(net), m.results.get(net, {})
    if methods is None or "best-box" not in by or any(methods[c] not in by for c in range(10)):
        return None
    picked = [
        by[methods[c]]["rel_error"][list(by[methods[c]]["classes"]).index(c)] for c in range(10)
    ]
    ours, theirs = by["best-box"]["median_rel_error"], float(np.median(picked))
    return {"ours": ours, "paper": theirs, "ratio": ours / theirs if theirs else np.inf}


register(
    Claim(
        "fig3.best_box_closer",
        "fig3_inverse_images",
        Fig3Metrics,
        says="our best-box images get much closer to the targets than the paper's picks",
        numbers=_closer,
        test=lambda x: x["ours"] * MUCH <= x["paper"],
        holds="`best-box` gets much closer to the targets than the paper's picks, with pixels "
        "in [0, 1]: median relative error {ours:.3g} against {paper:.3g} ({ratio:.1e} of it).",
        fails="`best-box` is not much closer to the targets than the paper's picks (much: ten "
        "times): median relative error {ours:.3g} against {paper:.3g}, {ratio:.2f} of it.",
        subjects=lambda m: [n for n in m.results if n in paper.FIGURE3_METHODS],
    )
)


# 4. the Levenberg-Marquardt polish that finishes descent (fig3)
def _polish(m: Any, net: str) -> dict | None:
    r = m.results[net].get("descent") or {}
    p = (r.get("settings") or {}).get("polish") or {}
    if not p.get("steps"):
        return None
    err = np.asarray(r["rel_error"], dtype=float)
    stayed = [e for e, ok in zip(err, r["success"], strict=True) if not ok and e <= p["handoff"]]
    return {
        "steps": int(p["steps"]),
        "classes": int(p["classes"]),
        "stayed": len(stayed),
        "worst": max(stayed, default=0.0),
    }


register(
    Claim(
        "fig3.polish_converges",
        "fig3_inverse_images",
        Fig3Metrics,
        says="the Levenberg-Marquardt polish finishes descent in two or three steps",
        numbers=_polish,
        test=lambda x: x["steps"] <= POLISH_STEPS and x["stayed"] == 0,
        holds="`descent` hands {classes} digit(s) to Levenberg-Marquardt, which finishes them "
        "in {steps} step(s).",
        fails="`descent` hands {classes} digit(s) to Levenberg-Marquardt, which takes {steps} "
        "steps; {stayed} of them stay above the tolerance (the largest at {worst:.1e}).",
        subjects=lambda m: list(m.results),
    )
)


# 5. lesson 4: do the null-space samples look different?
def _visible(m: Any, net: str) -> dict | None:
    s = m.null_space.get(net) or {}
    if s.get("pixel_range") is None:
        return None
    diff, span = s["largest_difference"], s["pixel_range"]
    return {"k": len(s["classes"]), "diff": diff, "range": span, "share": diff / span}


register(
    Claim(
        "lesson4.null_space_visible",
        "lesson4_exact_inversion",
        Lesson4Metrics,
        says="the null-space samples differ by a sizeable share of their pixel range",
        numbers=_visible,
        test=lambda x: x["share"] >= VISIBLE,
        holds="the {k} images differ by up to {diff:.2g} (the largest single-pixel difference), "
        "{share:.0%} of their pixel range {range:.3g}; the second row, on its own scale, "
        "shows where they differ.",
        fails="the {k} images look alike in the first row: they differ by at most {diff:.2g}, "
        "{share:.1%} of their pixel range {range:.3g}; the differences show only in the second "
        "row, on its own scale.",
        subjects=lambda m: list(m.null_space),
    )
)
