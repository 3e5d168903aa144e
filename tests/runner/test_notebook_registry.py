"""The notebook registry: each notebook once, and everything that names a notebook, a figure
or a metrics file agrees with it (the files in notebooks/, the figures each notebook saves,
the metrics classes, the report's titles and captions)."""

from __future__ import annotations

import json
import re

import pytest

from nnspaces.files import write_json
from nnspaces.paths import NOTEBOOK_DIR
from nnspaces.runner import metrics as metrics_module
from nnspaces.runner import notebooks as registry
from nnspaces.runner.report import write_report


def source(name: str) -> str:
    cells = json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())["cells"]
    return "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def test_every_notebook_file_is_registered_once():
    names = [nb.name for nb in registry.NOTEBOOKS]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))


@pytest.mark.parametrize("nb", registry.NOTEBOOKS, ids=lambda nb: nb.name)
def test_every_figure_a_notebook_saves_is_registered_with_a_caption(nb):
    saved = set(re.findall(r"figure_path\(\s*f?[\"']([^\"']+)[\"']", source(nb.name)))
    saved = {s.replace("{n}", "{network}").replace("{name}", "{network}") for s in saved}
    assert saved == {f.stem for f in nb.figures}
    for fig in nb.figures:
        assert len(fig.caption) > 40 and fig.caption.endswith(".")


@pytest.mark.parametrize("nb", registry.NOTEBOOKS, ids=lambda nb: nb.name)
def test_the_metrics_file_is_the_one_the_notebook_writes(nb):
    classes = re.findall(r"ns\.(\w+Metrics)\(", source(nb.name))
    names = {getattr(metrics_module, c).name for c in classes}
    assert names == ({nb.metrics} if nb.metrics else set())


def test_a_figure_with_a_network_placeholder_matches_only_its_files():
    fig = registry.Figure("fig3_methods_{network}", "{network}: every method.")
    assert fig.matches("fig3_methods_resnet18") == "resnet18"
    assert fig.matches("fig3_methods_") is None and fig.matches("fig3_scores") is None
    assert registry.caption("fig3_methods_fcnn5").startswith("fcnn5: every inversion method")
    assert registry.caption("nobody_saves_this") is None
    assert registry.figure_rank("fig1")[0] < registry.figure_rank("fig3_methods_vit")[0]
    assert registry.figure_rank("zzz")[0] == registry.figure_rank("aaa")[0]  # unregistered: last


def test_kinds_and_errors():
    assert registry.names_of_kind("figure") == [
        "fig1_fcnn_signal_space",
        "fig2_resnet_conv_signal_space",
        "fig3_inverse_images",
    ]
    assert registry.names_of_kind("tool") == ["explore"]  # any_model is not run by the runner
    with pytest.raises(ValueError, match="unknown notebook kind.*'poster'.*figure, lesson, tool"):
        registry.names_of_kind("poster")
    with pytest.raises(ValueError, match="unknown notebook 'fig9'; known: fig1_fcnn"):
        registry.notebook("fig9")
    with pytest.raises(ValueError, match="kind 'talk' is not one of"):
        registry.Notebook("x", "X", "talk")


def test_the_report_shows_every_notebook_with_its_title(tmp_path):
    rows = [{"notebook": n, "status": "ok", "seconds": 1.0} for n in registry.runner_notebooks()]
    write_json(tmp_path / "run.json", {"profile": "smoke", "notebooks": rows})
    text = write_report(tmp_path, render_notebooks=False).read_text()
    for nb in registry.NOTEBOOKS:
        if nb.runs:
            assert nb.title.replace("'", "&#39;") in text, nb.name
