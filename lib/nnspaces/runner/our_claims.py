"""The registered claims: every qualitative statement the notebooks make about a result.

Each is a :class:`~.claims.Claim`: the numbers that decide it (read from the saved metrics),
a predicate over them and a sentence for each outcome. The thresholds that turn a word into a
number ("to rounding error", "much closer", "a few steps", "visibly") are named constants here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import paper
from .claims import Claim, register
from .metrics import Fig3Metrics, Lesson4Metrics, Lesson5Metrics, Lesson6Metrics

#: "To rounding error": a relative output error at most this (float64 solutions reach 1e-12).
ROUNDING = 1e-9
#: "Much closer": at least this many times smaller a median error.
MUCH = 10.0
#: "A few steps" of a root finder or a polish.
FEW_STEPS = 20
POLISH_STEPS = 3
#: "Differ visibly": the largest difference is at least this share of the pixel range.
VISIBLE = 0.05
#: "Clearly more pixels on 0 or 1": at least this many more, as a fraction of all pixels.
CLEARLY_MORE = 0.05
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


# 6. lesson 5: does the larger step put more pixels on 0 or 1?
def _binarised(m: Any, net: str) -> dict | None:
    runs = sorted((m.box.get(net) or {}).values(), key=lambda r: r["lr"])
    if len(runs) < 2:
        return None
    small, big = runs[0], runs[-1]
    return {
        "lr_big": big["lr"],
        "lr_small": small["lr"],
        "big": big["at_bound"],
        "small": small["at_bound"],
    }


register(
    Claim(
        "lesson5.larger_step_binarises",
        "lesson5_priors_and_natural_images",
        Lesson5Metrics,
        says="the larger projected-gradient step pushes more pixels onto 0 or 1",
        numbers=_binarised,
        test=lambda x: x["big"] - x["small"] >= CLEARLY_MORE,
        holds="the larger first step ({lr_big:g}) puts more pixels exactly on 0 or 1: "
        "{big:.0%} against {small:.0%} with {lr_small:g}.",
        fails="the larger first step ({lr_big:g}) does not put clearly more pixels exactly on 0 "
        "or 1: {big:.0%} against {small:.0%} with {lr_small:g}.",
        subjects=lambda m: list(m.box),
    )
)


# 7. lesson 5: is NATURAL_SEARCH's choice of targets supported by this run's evidence?
def _evidence(m: Any, net: str) -> dict | None:
    rows = {r["targets"]: r for r in m.evidence if r["network"] == net}
    chosen = next((k for k, r in rows.items() if r.get("chosen")), None)
    if chosen is None or len(rows) < 2:
        return None
    other = next(k for k in rows if k != chosen)
    return {
        "chosen": chosen,
        "other": other,
        "seen": rows[chosen]["recognised"],
        "seen_other": rows[other]["recognised"],
    }


register(
    Claim(
        "lesson5.natural_search_supported",
        "lesson5_priors_and_natural_images",
        Lesson5Metrics,
        says="NATURAL_SEARCH's targets are the ones whose images the other networks recognise",
        numbers=_evidence,
        test=lambda x: x["seen"] >= x["seen_other"],
        holds="`NATURAL_SEARCH`'s {chosen} targets do at least as well on this run as "
        "{other}: at prior weight 0 both other networks recognise {seen}/10 of their images, "
        "against {seen_other}/10 with {other} targets.",
        fails="this run does not support `NATURAL_SEARCH`'s {chosen} targets: at prior weight 0 "
        "both other networks recognise {seen}/10 of their images, against {seen_other}/10 with "
        "{other} targets. The table is fixed in the library, not chosen on this run; the "
        "frontier below shows what the prior buys with them.",
        subjects=lambda m: list(dict.fromkeys(r["network"] for r in m.evidence)),
    )
)


# 8. lesson 6: why descent stops on the raw-score probability targets
def _descent_stop(m: Any, net: str) -> dict | None:
    r = (m.probability.get(net) or {}).get("descent")
    if not r or r.get("step_limit") is None:
        return None
    return {
        "steps": r["steps"],
        "limit": r["step_limit"],
        "reached": r["n_success"],
        "n": len(r["classes"]),
    }


register(
    Claim(
        "lesson6.descent_stops",
        "lesson6_followup_paper",
        Lesson6Metrics,
        says="descent leaves the raw-score targets only when all match, or at its step limit",
        numbers=_descent_stop,
        test=lambda x: x["reached"] == x["n"] or x["steps"] >= x["limit"],
        holds="on the raw-score probability targets (p(c) >= 0.9, from the average of all "
        "images), `descent` (with its Levenberg-Marquardt polish) stopped after {steps} of "
        "its {limit} steps with {reached}/{n} digits matched: it stops when every digit is "
        "matched or handed to the polish, or at its step limit.",
        fails="on the raw-score probability targets (p(c) >= 0.9, from the average of all "
        "images), `descent` (with its Levenberg-Marquardt polish) stopped after {steps} of "
        "its {limit} steps with {reached}/{n} digits matched: the stall rule ended the others "
        "before the step limit.",
        subjects=lambda m: list(m.probability),
    )
)


# 9. lesson 6: Levenberg-Marquardt on the SELU networks' min/max targets
def _lm(m: Any, net: str) -> dict | None:
    r = (m.min_max.get(net) or {}).get("lm")
    if not r or "exact" not in (m.probability.get(net) or {}):  # exact: the SELU networks
        return None
    n, steps, limit, reached = len(r["classes"]), r["steps"], r.get("step_limit"), r["n_success"]
    capped = limit is not None and steps >= limit and reached < n
    if capped and limit <= FEW_STEPS:
        why = (
            f"its step limit of {limit} (this run's) stopped it, so this run does not decide "
            f"whether it converges in a few ({FEW_STEPS}) steps"
        )
    elif capped:
        why = f"its step limit of {limit} stopped it, so it does not converge in a few steps here"
    elif reached < n and limit is not None:
        why = (
            f"the stall rule stopped it before its step limit of {limit}, so it does not "
            "converge in a few steps here"
        )
    else:
        why = f"it does not converge in a few ({FEW_STEPS}) steps here"
    return {
        "steps": steps,
        "limit": limit,
        "reached": reached,
        "n": n,
        "median": r["median_rel_error"],
        "why": why,
    }


register(
    Claim(
        "lesson6.selu_lm_few_steps",
        "lesson6_followup_paper",
        Lesson6Metrics,
        says="on the SELU networks Levenberg-Marquardt converges in a few steps",
        numbers=_lm,
        test=lambda x: x["reached"] == x["n"] and x["steps"] <= FEW_STEPS,
        holds="`lm` reaches all {n} min/max targets in {steps} steps (median relative error "
        "{median:.1e}).",
        fails="`lm` reaches {reached}/{n} min/max targets and stops after {steps} steps at a "
        "median relative error of {median:.2g}: {why}.",
        subjects=lambda m: list(m.min_max),
    )
)


# 12. lesson 6: where the random backward walk has freedom, from the layer table
def _freedom(m: Any, net: str) -> dict | None:
    dims = m.null_dims.get(net)
    if not dims:
        return None
    more = [f"{i + 1} ({d})" for i, d in enumerate(dims) if i and d]
    w = (m.walk.get(net) or {}).get("all")
    drawn = f"{int(sum(w['success']))}/{int(w['k'])}" if w else "none"
    return {"first": dims[0], "more": _list(more), "n_more": len(more), "drawn": drawn}


register(
    Claim(
        "lesson6.walk_freedom",
        "lesson6_followup_paper",
        Lesson6Metrics,
        says="the walk's only freedom is the first layer's null space",
        numbers=_freedom,
        test=lambda x: x["n_more"] == 0,
        holds='only the first layer has a null space ({first} dimensions): `layers="all"` '
        'draws in the same space as `layers="first"`.',
        fails="the first layer's null space ({first} dimensions) is not the only freedom: "
        "layers {more} (null-space dimension in brackets) have one too, and "
        '`layers="all"` draws in them, walking down from the output (pre-images of its '
        'draws here: {drawn}); `layers="first"` keeps the exact solution\'s hidden values and '
        "draws only in the first.",
        subjects=lambda m: list(m.null_dims),
    )
)


def _walk_first(m: Any, net: str) -> dict | None:
    w = (m.walk.get(net) or {}).get("first")
    return None if not w else {"ok": int(sum(w["success"])), "k": int(w["k"])}


register(
    Claim(
        "lesson6.walk_first_exact",
        "lesson6_followup_paper",
        Lesson6Metrics,
        says="every draw in the first layer's null space is an exact pre-image",
        numbers=_walk_first,
        test=lambda x: x["ok"] == x["k"],
        holds='every `layers="first"` draw is an exact pre-image ({ok}/{k}).',
        fails='only {ok}/{k} `layers="first"` draws are exact pre-images (their reasons above).',
        subjects=lambda m: list(m.walk),
    )
)
