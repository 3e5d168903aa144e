"""The registered claims of lessons 5 and 6 (those of Figure 3 and lesson 4, and the pattern
they follow: :mod:`.our_claims`). The thresholds that turn a word into a number are named
constants here."""

from __future__ import annotations

from typing import Any

from .claims import Claim, register
from .metrics import Lesson5Metrics, Lesson6Metrics
from .our_claims import _list

#: "A few steps" of a root finder.
FEW_STEPS = 20
#: "Clearly more pixels on 0 or 1": at least this many more, as a fraction of all pixels.
CLEARLY_MORE = 0.05


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
