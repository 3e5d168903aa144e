"""The claim registry: each claim decided from the metrics a file holds, both of its sentences
rendered with the numbers that decide it, and each of issue 23's twelve stale sentences caught:
flip the metric and the other sentence is shown."""

from __future__ import annotations

import pytest

from nnspaces import paper
from nnspaces.runner import lesson_claims, our_claims
from nnspaces.runner.claims import RUN, Claim
from nnspaces.runner.decide import claim, claims, evaluate_claims, get_claim
from nnspaces.runner.metrics import Fig3Metrics

T = 1e-4


def res(rel=1e-15, *, classes=range(10), predicted=None, prob=0.1, success=None, **extra):
    """One method's result as a metrics file holds it."""
    classes = list(classes)
    rel = rel if isinstance(rel, list) else [rel] * len(classes)
    prob = prob if isinstance(prob, list) else [prob] * len(classes)
    return {
        "classes": classes,
        "rel_error": rel,
        "median_rel_error": sorted(rel)[len(rel) // 2],
        "success": success if success is not None else [e <= T for e in rel],
        "predicted": predicted if predicted is not None else classes,
        "prob": prob,
        **extra,
    }


def fig3(**methods_by_net) -> dict:
    return {
        "networks": {n: {"test_accuracy": 0.9, "methods": m} for n, m in methods_by_net.items()}
    }


def paper_methods(net: str, **given) -> dict:
    """Every start method of the paper and its +training, for ``net``."""
    names = {m.removesuffix("+training") for m in paper.FIGURE3_METHODS[net].values()}
    out = {}
    for m in names:
        out[m] = res(0.84)
        out[f"{m}+training"] = res(0.84)
    return out | given


def verdicts(claim_id: str, data: dict) -> dict:
    """The claim on a metrics file's dict: subject -> verdict."""
    c = get_claim(claim_id)
    return {v.subject: v for v in claim(claim_id, data).verdicts} if c else {}


# -- 1. "exact and newton reach the targets to rounding error" (fig3, lesson 4) ------------


@pytest.mark.parametrize("claim_id", ["fig3.exact_newton_reach", "lesson4.exact_newton_reach"])
def test_exact_newton_reach(claim_id):
    rel = [1e-15] * 10
    stale = rel[:3] + [5.5e-3] + rel[4:]
    ok = {"exact": res(rel), "newton": res(rel)}
    bad = {"exact": res(rel), "newton": res(stale)}
    make = (lambda m: fig3(fcnn5=m)) if claim_id.startswith("fig3") else _lesson4
    v = verdicts(claim_id, make(ok))["fcnn5"]
    assert v.holds and "all 10 targets to rounding error" in v.sentence
    v = verdicts(claim_id, make(bad))["fcnn5"]
    assert not v.holds
    assert (
        "`newton` 9/10" in v.sentence
        and "5.5e-03" in v.sentence
        and "reached by both: 3" in v.sentence
    )
    # "to rounding error" is at most ROUNDING, included
    edge = [our_claims.ROUNDING] * 10
    assert verdicts(claim_id, make({"exact": res(edge), "newton": res(edge)}))["fcnn5"].holds


def _lesson4(methods):
    return {"networks": {"fcnn5": {"methods": methods}}}


# -- 2. "+training leaves the misread images as it is" (fig3) --------------------------------


def test_training_that_changes_what_the_network_reads_says_so():
    net = "resnet18"
    before = res(0.84, predicted=[1] * 10, prob=0.29)
    after = res(0.8, predicted=[1] * 10, prob=0.86)
    after["predicted"][5], after["predicted"][6] = 5, 6
    same = paper_methods(net)
    v = verdicts("fig3.training_keeps_reading", fig3(resnet18=same))[net]
    assert v.holds and "as it was" in v.sentence
    changed = {}
    for m in same:
        changed[m] = after if m.endswith("+training") else before
    v = verdicts("fig3.training_keeps_reading", fig3(resnet18=changed))[net]
    assert not v.holds
    assert "1/10 -> 3/10" in v.sentence and "now correct: 5, 6" in v.sentence
    assert "0.29 -> 0.86" in v.sentence


# -- 3. "best-box rows get much closer" (fig3) -----------------------------------------------


def test_best_box_much_closer_or_not():
    net = "fcnn5"
    v = verdicts("fig3.best_box_closer", fig3(fcnn5=paper_methods(net, **{"best-box": res(0.756)})))
    assert not v[net].holds and "0.756 against 0.84, 0.90 of it" in v[net].sentence
    assert "not much closer" in v[net].sentence
    v = verdicts("fig3.best_box_closer", fig3(fcnn5=paper_methods(net, **{"best-box": res(1e-5)})))
    assert v[net].holds and "1e-05 against 0.84" in v[net].sentence
    # ten times closer, exactly: holds (<=)
    edge = {m: res(0.5) for m in paper_methods(net)} | {"best-box": res(0.05)}
    assert verdicts("fig3.best_box_closer", fig3(fcnn5=edge))[net].holds


# -- 4. "the polish converges in two or three steps" (fig3) ----------------------------------


def test_polish_steps():
    rel = [1e-6] * 9 + [2.4e-4]
    slow = res(rel, settings={"polish": {"handoff": 1e-2, "classes": 10, "steps": 10}})
    v = verdicts("fig3.polish_converges", fig3(fcnn1={"descent": slow}))["fcnn1"]
    assert not v.holds and "takes 10 steps" in v.sentence and "1 of them" in v.sentence
    assert "2.4e-04" in v.sentence
    fast = res([1e-6] * 10, settings={"polish": {"handoff": 1e-2, "classes": 4, "steps": 3}})
    v = verdicts("fig3.polish_converges", fig3(fcnn1={"descent": fast}))["fcnn1"]
    assert v.holds and "4 digit(s)" in v.sentence and "in 3 step(s)" in v.sentence
    unpolished = res(settings={"polish": {"handoff": 1e-2, "classes": 0, "steps": 0}})
    assert verdicts("fig3.polish_converges", fig3(fcnn1={"descent": unpolished})) == {}


# -- 5. "six images differ visibly" (lesson 4) -----------------------------------------------


def _null(diff, span):
    sample = res(classes=[3] * 6, largest_difference=diff, pixel_range=span)
    return {"networks": {"fcnn1": {"methods": {}, "null_space": sample}}}


def test_null_space_samples_visible_or_alike():
    v = verdicts("lesson4.null_space_visible", _null(0.72, 594.0))["fcnn1"]
    assert not v.holds and "look alike" in v.sentence and "0.72" in v.sentence
    assert "594" in v.sentence and "0.1%" in v.sentence
    v = verdicts("lesson4.null_space_visible", _null(0.5, 1.0))["fcnn1"]
    assert v.holds and "50%" in v.sentence
    # the largest single pixel is not how the images look: the sentence says which it is
    assert "largest single-pixel difference" in v.sentence and "visibl" not in v.sentence
    assert verdicts("lesson4.null_space_visible", _null(0.05, 1.0))["fcnn1"].holds


# -- 6. "the larger step pushes pixels onto 0 or 1" (lesson 5) -------------------------------


def _box(big, small):
    runs = {"0.1": {"lr": 0.1, "at_bound": big}, "0.01": {"lr": 0.01, "at_bound": small}}
    return {"networks": {}, "box": {"resnet18": runs}}


def test_larger_step_binarises_or_not():
    v = verdicts("lesson5.larger_step_binarises", _box(0.32, 0.33))["resnet18"]
    assert not v.holds and "32% against 33%" in v.sentence and "(0.1)" in v.sentence
    assert "binarised" not in v.sentence  # pixels on a bound say nothing of the grey ones
    v = verdicts("lesson5.larger_step_binarises", _box(0.6, 0.3))["resnet18"]
    assert v.holds and "60% against 30% with 0.01" in v.sentence


# -- 7. the NATURAL_SEARCH evidence (lesson 5) ----------------------------------------------


def _evidence(percentile, min_max):
    rows = [
        {"network": "fcnn1", "targets": "min-max", "chosen": False, "recognised": min_max},
        {"network": "fcnn1", "targets": "percentile", "chosen": True, "recognised": percentile},
    ]
    return {"networks": {}, "evidence": rows}


def test_natural_search_evidence():
    v = verdicts("lesson5.natural_search_supported", _evidence(5, 9))["fcnn1"]
    assert not v.holds and "does not support" in v.sentence
    assert "5/10" in v.sentence and "9/10 with min-max" in v.sentence
    v = verdicts("lesson5.natural_search_supported", _evidence(9, 5))["fcnn1"]
    assert v.holds and "9/10" in v.sentence
    assert verdicts("lesson5.natural_search_supported", _evidence(7, 7))["fcnn1"].holds


# -- 8, 9, 12: lesson 6 ----------------------------------------------------------------------


def _lesson6(**given):
    return {"level": 0.9, "accuracy": {}, "probability": {}} | given


def test_descent_stops_by_the_stall_rule_or_at_its_limit():
    stalled = res(steps=800, step_limit=1000, n_success=7)
    v = verdicts("lesson6.descent_stops", _lesson6(probability={"fcnn5": {"descent": stalled}}))
    assert not v["fcnn5"].holds and "800 of its 1000" in v["fcnn5"].sentence
    assert "stall rule" in v["fcnn5"].sentence
    limit = res(steps=1000, step_limit=1000, n_success=7)
    v = verdicts("lesson6.descent_stops", _lesson6(probability={"fcnn5": {"descent": limit}}))
    assert v["fcnn5"].holds and "7/10" in v["fcnn5"].sentence


def test_lm_on_selu_networks():
    prob = {"fcnn5": {"exact": res()}, "resnet18": {"lm": res()}}
    slow = res(0.13, steps=40, n_success=2)
    data = _lesson6(probability=prob, min_max={"fcnn5": {"lm": slow}, "resnet18": {"lm": slow}})
    v = verdicts("lesson6.selu_lm_few_steps", data)
    assert set(v) == {"fcnn5"}  # exact applies: a SELU network; resnet18 is not one
    assert not v["fcnn5"].holds and "2/10" in v["fcnn5"].sentence and "0.13" in v["fcnn5"].sentence
    fast = res(1e-12, steps=lesson_claims.FEW_STEPS, n_success=10)
    v = verdicts("lesson6.selu_lm_few_steps", data | {"min_max": {"fcnn5": {"lm": fast}}})
    assert v["fcnn5"].holds and f"in {lesson_claims.FEW_STEPS} steps" in v["fcnn5"].sentence


def test_lm_says_when_its_step_limit_stopped_it():
    """A quick run caps `lm` at 3 steps: the sentence says the cap stopped it, not that the
    method does not converge in a few steps; a cap above a few steps, or the stall rule, does
    decide it."""
    prob = {"fcnn5": {"exact": res()}}

    def lm(steps, limit):
        r = res(0.13, steps=steps, n_success=2, step_limit=limit)
        return verdicts(
            "lesson6.selu_lm_few_steps", _lesson6(probability=prob, min_max={"fcnn5": {"lm": r}})
        )["fcnn5"]

    v = lm(3, 3)
    assert not v.holds and "after 3 steps" in v.sentence
    assert "its step limit of 3 (this run's) stopped it" in v.sentence
    assert "does not decide" in v.sentence and "does not converge" not in v.sentence
    v = lm(30, 30)
    assert "step limit of 30 stopped it" in v.sentence
    assert "does not converge in a few steps here" in v.sentence
    v = lm(12, 30)
    assert "the stall rule stopped it before its step limit of 30" in v.sentence
    assert "does not converge in a few steps here" in v.sentence
    done = res(1e-12, steps=3, n_success=10, step_limit=3)  # all reached at the cap: holds
    data = _lesson6(probability=prob, min_max={"fcnn5": {"lm": done}})
    assert verdicts("lesson6.selu_lm_few_steps", data)["fcnn5"].holds


def test_walk_freedom_from_the_layer_table():
    data = _lesson6(null_dims={"fcnn5": [528, 0, 128, 96, 22], "fcnn1": [774]})
    v = verdicts("lesson6.walk_freedom", data)
    assert v["fcnn1"].holds and "(774 dimensions)" in v["fcnn1"].sentence
    assert not v["fcnn5"].holds and "not the only freedom" in v["fcnn5"].sentence
    assert "3 (128), 4 (96), 5 (22)" in v["fcnn5"].sentence and "528" in v["fcnn5"].sentence
    assert "pre-images of its draws here: none" in v["fcnn5"].sentence  # no walk in the metrics
    # the walk through every layer can fail on every draw: the sentence says so
    walk = {"fcnn5": {"all": {"k": 6, "success": [False] * 6}}}
    v = verdicts("lesson6.walk_freedom", _lesson6(null_dims={"fcnn5": [528, 0, 128]}, walk=walk))
    assert "pre-images of its draws here: 0/6" in v["fcnn5"].sentence
    walk = {"fcnn5": {"first": {"k": 6, "success": [True] * 5 + [False]}}}
    v = verdicts("lesson6.walk_first_exact", _lesson6(walk=walk))["fcnn5"]
    assert not v.holds and "5/6" in v.sentence


# -- the registry ----------------------------------------------------------------------------

COVERED = {
    "fig3.exact_newton_reach",
    "lesson4.exact_newton_reach",
    "fig3.training_keeps_reading",
    "fig3.best_box_closer",
    "fig3.polish_converges",
    "lesson4.null_space_visible",
    "lesson5.larger_step_binarises",
    "lesson5.natural_search_supported",
    "lesson6.descent_stops",
    "lesson6.selu_lm_few_steps",
    "lesson6.walk_freedom",
    "lesson6.walk_first_exact",
}


def test_every_claim_has_a_test_above_that_flips_it():
    assert set(claims()) == COVERED


def test_every_claim_names_a_registered_notebook_and_metrics():
    from nnspaces.runner.notebooks import notebook

    for c in claims().values():
        assert notebook(c.notebook).metrics == c.reads.name, c.id


def test_a_registered_id_is_unique_and_an_unknown_one_names_the_known():
    with pytest.raises(ValueError, match="twice"):
        from nnspaces.runner.claims import register

        register(get_claim("fig3.best_box_closer"))
    with pytest.raises(KeyError, match="fig3.best_box_closer"):
        get_claim("fig3.nope")


def test_rendered_markdown_one_sentence_or_one_bullet_a_network():
    c = Claim(
        "t.x",
        "fig3_inverse_images",
        Fig3Metrics,
        "x",
        lambda m, s: {"a": 1.5},
        lambda x: x["a"] > 1,
        "a is {a:g}",
        "a is only {a:g}",
    )
    assert c.decide({"a": 1.5}).sentence == "a is 1.5"
    assert c.decide({"a": 1.0}).sentence == "a is only 1"
    assert c.decide({"a": 1.0}).subject == RUN
    data = fig3(
        fcnn1=paper_methods("fcnn1", **{"best-box": res(1e-5)}),
        fcnn5=paper_methods("fcnn5", **{"best-box": res(0.756)}),
    )
    text = claim("fig3.best_box_closer", data)._repr_markdown_()
    assert text.startswith("- **fcnn1**: ") and "\n- **fcnn5**: " in text


def test_evaluate_claims_reads_a_run_folder(tmp_path):
    import json

    (tmp_path / "metrics").mkdir()
    data = fig3(fcnn5=paper_methods("fcnn5", **{"best-box": res(0.756)}))
    (tmp_path / "metrics" / "fig3.json").write_text(json.dumps(data))
    (tmp_path / "metrics" / "lesson6.json").write_text(json.dumps({"other": 1}))  # a layout
    table = evaluate_claims(tmp_path)
    row = table.set_index(["id", "subject"]).loc[("fig3.best_box_closer", "fcnn5")]
    assert not row.holds and "0.756" in row.sentence and row.notebook == "fig3_inverse_images"
