"""The README's result tables are the rendering of the metrics snapshot they were made from."""

from __future__ import annotations

import json

import pytest

from nnspaces.runner import readme


def test_the_readme_shows_exactly_its_snapshot():
    snap = json.loads(readme.SNAPSHOT.read_text())
    assert readme.readme_block(readme.README.read_text()) == readme.render(snap)


def _run(tmp_path):
    out = tmp_path / "run"
    (out / "metrics").mkdir(parents=True)
    info = {"profile": "p", "dataset": "d", "n_train": 40, "n_test": 10, "source": "s"}
    fig1 = {**info, "network": "fcnn1", "test_accuracy": 0.875, "condition_number": 3.25}
    method = {"median_rel_error": 0.0123}
    fig3 = {
        **info,
        "networks": {
            "fcnn1": {
                "test_accuracy": 0.875,
                "methods": {
                    "descent": method,
                    "best-box": {"median_rel_error": 0.3, "success": [True, False]},
                },
            },
            "fcnn5": {"test_accuracy": 0.5, "methods": {"descent": {"median_rel_error": 2e-7}}},
        },
    }
    natural = {
        "n_recognised": 7,
        "chosen_weight": 0.2,
        "targets": "min-max",
        "median_rel_error": 0.5,
    }
    lesson5 = {**info, "networks": {"fcnn1": {"natural": natural}}}
    for name, m in (("fig1", fig1), ("fig3", fig3), ("lesson5", lesson5)):
        (out / "metrics" / f"{name}.json").write_text(json.dumps(m))
    rows = [{"notebook": "fig1", "seconds": 12.4}, {"notebook": "fig3", "seconds": 80.2}]
    (out / "run.json").write_text(json.dumps({"notebooks": rows}))
    return out


def test_snapshot_and_rendering_carry_the_runs_numbers(tmp_path):
    snap = readme.snapshot(_run(tmp_path))
    text = readme.render(snap)
    assert "| fcnn1 test accuracy | 87.5% | 92% |" in text
    assert "| fcnn5 test accuracy | 50.0% | 97% |" in text
    assert "| fcnn1 layer 1 condition number | 3.25 | 7.22 |" in text
    assert "| resnet18 test accuracy | missing | 99% |" in text
    assert "| `descent` | 0.012 | 2e-07 |" in text
    assert "| `natural pre-images` | 0.5 (7/10, min-max) | - |" in text
    assert (
        "`best-box` reaches (within the tolerance) with every pixel in [0, 1]: fcnn1 1/2." in text
    )
    assert "profile `p`, d (40 training / 10 test images: s)" in text
    assert "took 93 s in all (fig1 12 s, fig3 80 s;" in text
    # a run that recorded its wall clock (notebooks side by side): both times, each named
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps(record | {"seconds": 61.7, "jobs": 2}))
    text = readme.render(readme.snapshot(tmp_path / "run"))
    assert (
        "The run took 62 s, 2 notebooks at a time; its notebooks 93 s together (fig1 12 s" in text
    )


def test_a_run_without_run_json_has_no_times(tmp_path):
    out = _run(tmp_path)
    (out / "run.json").unlink()
    snap = readme.snapshot(out)
    assert snap["times"] == {} and "took" not in readme.render(snap)


def test_update_rewrites_only_the_block(tmp_path):
    page = tmp_path / "README.md"
    lessons = f"{readme.LESSONS_START}\n{readme.LESSONS_END}"
    page.write_text(
        f"# title\n\nbefore\n{readme.START}\nold numbers\n{readme.END}\n{lessons}\nafter\n"
    )
    readme.update(_run(tmp_path), page, tmp_path / "snap.json")
    text = page.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith("\nafter\n")
    assert "old numbers" not in text and "87.5%" in text
    assert readme.render(json.loads((tmp_path / "snap.json").read_text())) in text
    page.write_text("no markers")
    with pytest.raises(ValueError, match="no generated block"):
        readme.update(_run(tmp_path / "again"), page, tmp_path / "snap.json")
    with pytest.raises(FileNotFoundError, match="holds no metrics"):
        readme.snapshot(tmp_path / "empty")


def test_the_readme_lists_the_registrys_lessons():
    """The README's table of lessons is the registry's (names, order, what each teaches, its
    minutes), as ``python -m nnspaces readme`` writes it."""
    text = readme.README.read_text()
    block = readme.readme_block(text, readme.LESSONS_START, readme.LESSONS_END)
    assert block == readme.lessons_block()
    assert block.count("\n| ") == 7  # the header and six lessons
    assert "| 6 | `lesson6_followup_paper` |" in block and block.endswith(readme.LESSONS_END)


def test_update_writes_both_blocks(tmp_path):
    page = tmp_path / "README.md"
    stale = readme.lessons_block().replace("| 45 min |", "| 44 min |")
    assert stale != readme.lessons_block()
    page.write_text(f"intro\n{readme.START}\nold\n{readme.END}\nmiddle\n{stale}\nend\n")
    readme.update(_run(tmp_path), readme=page, snap_path=tmp_path / "snap.json")
    text = page.read_text()
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("\nend\n")
    assert readme.lessons_block() in text and "44 min" not in text and "\nold\n" not in text
