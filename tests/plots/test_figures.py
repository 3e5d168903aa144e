"""Figures: one style, applied inside every plotting function and never to the process; grey
scales as documented; files written whole, readable by others."""

import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import math  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import mode, umask  # noqa: E402
from PIL import Image  # noqa: E402

from nnspaces.plots import figures as plots  # noqa: E402
from nnspaces.plots import inversion as ip  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# A user's own settings, unlike the style in every respect the tests look at.
USER = {
    "figure.dpi": 72.0,
    "savefig.dpi": 50.0,
    "image.cmap": "viridis",
    "image.interpolation": "bilinear",
    "axes.spines.top": True,
    "font.size": 14.0,
}


def _one_of_each():
    """Every plotting function, called with small inputs."""
    rng = np.random.default_rng(0)
    return {
        "image_grid": lambda: plots.image_grid([rng.random((3, 16))]),
        "spectrum": lambda: plots.spectrum([3.0, 2.0, 1.0], condition_number=3.0),
        "grouped_bars": lambda: plots.grouped_bars({"a": [1, 2], "b": [2, 3]}, ["x", "y"]),
        "score_histograms": lambda: ip.score_histograms(
            {"net": rng.standard_normal((30, 3))}, rng.integers(0, 3, 30)
        ),
        "frontier": lambda: ip.frontier(
            {
                "net": [
                    {"weight": 0.0, "median_rel_error": 1e-3, "n_agree": 2},
                    {"weight": 1e-2, "median_rel_error": 1e-2, "n_agree": 7},
                ]
            }
        ),
        "spread_figure": lambda: plots.spread_figure(
            [
                {
                    "kind": "k",
                    "group": "all",
                    "network": "n",
                    "name": "m",
                    "n": 3,
                    "values": [1e-3, 2e-3, None],
                    "mean": 1.5e-3,
                    "low": -1e-3,
                    "high": 4e-3,
                    "paper": 2.5e-3,
                }
            ],
            "k",
            log=True,
        ),
        "head_spectra": lambda: plots.head_spectra({"0": {"Q": [np.array([2.0, 1.0])]}}),
        "signed_grid": lambda: ip.signed_grid([rng.normal(size=(2, 16))]),
        "null_space_figure": lambda: ip.null_space_figure({"n": rng.normal(size=(2, 16))}, digit=1),
        "error_histories": lambda: ip.error_histories({"n": {"lm": [(0, 1.0), (1, 0.1)]}}),
    }


PLOTTERS = _one_of_each()


def test_every_plotting_function_is_checked_here():
    import inspect

    public = {
        name: f
        for module in (plots, ip)
        for name, f in vars(module).items()
        if inspect.isfunction(f) and f.__module__ == module.__name__ and not name.startswith("_")
    }
    assert set(public) == {*PLOTTERS, "save_figure", "style", "styled"}
    for name in (*PLOTTERS, "save_figure"):
        assert public[name].__wrapped__  # made by @styled


def test_importing_plots_changes_no_global_setting():
    code = """
import json, sys
import matplotlib
matplotlib.use("Agg")
before = {k: repr(v) for k, v in matplotlib.rcParams.items()}
import nnspaces.plots.figures
assert "nnspaces.plots.figures" in sys.modules
after = {k: repr(v) for k, v in matplotlib.rcParams.items()}
print(json.dumps(sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))))
"""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    changed = json.loads(out.stdout.strip().splitlines()[-1])
    assert changed == []


@pytest.mark.parametrize("name", PLOTTERS)
def test_every_plot_carries_the_style_and_leaves_the_users_settings(name):
    with matplotlib.rc_context(USER):
        fig = PLOTTERS[name]()
        assert fig.dpi == 110  # the style's, not the user's 72
        for key, value in USER.items():
            assert matplotlib.rcParams[key] == value  # restored after the call
        mine = plt.figure()
        assert mine.dpi == 72  # a user's own figure keeps the user's look
    ax = fig.axes[0]
    assert not ax.spines["top"].get_visible() and not ax.spines["right"].get_visible()


def test_image_grid_style_and_column_scale():
    rows = [
        np.array([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]]),
        np.array([[-1.0, 0.0, 0.0, 0.0], [4.0, 6.0, 8.0, 9.0]]),
    ]
    with matplotlib.rc_context(USER):
        fig = plots.image_grid(rows, row_labels=["a", "b"], col_labels=["c0", "c1"])
    assert fig.dpi == 110
    axes = np.array(fig.axes).reshape(2, 2)
    images = [[axes[r, c].images[0] for c in range(2)] for r in range(2)]
    assert images[0][0].get_cmap().name == "gray"
    assert images[0][0].get_interpolation() == "nearest"
    # the paper's scale: each column one min-to-max over the rows
    assert images[0][0].get_clim() == images[1][0].get_clim() == (-1.0, 3.0)
    assert images[0][1].get_clim() == images[1][1].get_clim() == (4.0, 9.0)
    assert images[0][0].get_array().shape == (2, 2)
    assert axes[0, 0].get_title() == "c0" and axes[0, 1].get_title() == "c1"
    assert axes[0, 0].get_ylabel() == "a" and axes[1, 0].get_ylabel() == "b"


def test_image_grid_other_scales_captions_and_ragged_rows():
    rows = [
        torch.tensor([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0]]),  # a tensor works too
        np.array([[-1.0, 0.0, 0.0, 0.5]]),
        np.array([[0.2, 0.4, 0.6, 0.8], [1.0, 2.0, 3.0, 4.0]]),
    ]
    fig = plots.image_grid(
        rows,
        scale=["image", "unit", "row"],
        captions=[["x", ""], ["y"], ["z", "w"]],
        title="T",
    )
    axes = np.array(fig.axes).reshape(3, 2)
    assert axes[0, 0].images[0].get_clim() == (0.0, 3.0)  # its own min and max
    assert axes[0, 1].images[0].get_clim() == (5.0, 6.0)  # constant: lo to lo + 1
    assert axes[1, 0].images[0].get_clim() == (0.0, 1.0)  # unit
    assert axes[2, 0].images[0].get_clim() == axes[2, 1].images[0].get_clim() == (0.2, 4.0)
    assert not axes[1, 1].images and not axes[1, 1].axison  # no image there: empty
    assert axes[0, 0].get_xlabel() == "x" and axes[2, 1].get_xlabel() == "w"
    assert fig._suptitle.get_text() == "T"


def test_image_grid_bad_scale_restores_the_settings():
    with matplotlib.rc_context(USER):
        with pytest.raises(ValueError, match="bad scale 'columns'; allowed per row: column"):
            plots.image_grid([np.zeros((1, 4))], scale="columns")
        with pytest.raises(ValueError, match="bad scale"):
            plots.image_grid([np.zeros((1, 4)), np.zeros((1, 4))], scale=["unit"])
        assert matplotlib.rcParams["figure.dpi"] == 72


def test_spectrum_draws_the_singular_values():
    s = [4.0, 2.0, 0.5]
    fig = plots.spectrum(s, condition_number=8.0, label="W")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), s)
    assert ax.get_yscale() == "log" and ax.get_title() == "condition number 8"
    assert plots.spectrum(s, log=False).axes[0].get_yscale() == "linear"
    # drawing into a given axes returns its figure
    own, ax2 = plt.subplots()
    assert plots.spectrum(s, ax=ax2) is own


def test_grouped_bars():
    fig = plots.grouped_bars(
        {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]}, ["x", "y", "z"], reference=2.5
    )
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert any(list(line.get_ydata()) == [2.5, 2.5] for line in ax.lines)
    stacked = plots.grouped_bars({"a": [1.0, 2.0], "b": [4.0, 5.0]}, ["x", "y"], stacked=True)
    bottoms = [p.get_y() for p in stacked.axes[0].patches]
    assert bottoms == [0.0, 0.0, 1.0, 2.0]


def _png_dpi(path):
    with Image.open(path) as img:
        return img.info["dpi"]


@pytest.mark.parametrize("pdf", [False, True])
def test_save_figure_writes_styled_files_readable_by_others(tmp_path, pdf):
    fig = plots.spectrum([3.0, 1.0])
    path = tmp_path / "figures" / "f.png"
    with umask(0o022), matplotlib.rc_context(USER):
        assert plots.save_figure(fig, path, pdf=pdf) == path
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert mode(path) == 0o644
    assert _png_dpi(path) == pytest.approx((150, 150), abs=0.1)  # the style's savefig.dpi
    names = sorted(p.name for p in path.parent.iterdir())
    if pdf:
        assert names == ["f.pdf", "f.png"]
        assert (path.parent / "f.pdf").read_bytes()[:5] == b"%PDF-"
        assert mode(path.parent / "f.pdf") == 0o644
    else:
        assert names == ["f.png"]


def test_save_figure_follows_a_private_umask_and_replaces(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"old")
    with umask(0o077):
        plots.save_figure(plots.spectrum([1.0]), path)
    assert mode(path) == 0o600
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_save_figure_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"old")
    fig = plots.spectrum([1.0])
    fig.savefig = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full"))
    with pytest.raises(RuntimeError, match="disk full"):
        plots.save_figure(fig, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_style_is_a_context():
    before = matplotlib.rcParams["figure.dpi"]
    with plots.style():
        for key, value in plots.STYLE.items():
            assert matplotlib.rcParams[key] == value
    assert matplotlib.rcParams["figure.dpi"] == before


def test_style_keeps_the_interactive_mode_set_inside_it():
    """In a notebook pyplot turns interactive mode on at its first figure, which is drawn
    inside the style: undoing that would keep every later figure from being shown."""
    was = matplotlib.is_interactive()
    try:
        matplotlib.interactive(False)
        with plots.style():
            matplotlib.interactive(True)
        assert matplotlib.is_interactive()
        with pytest.raises(RuntimeError, match="inside"), plots.style():
            matplotlib.interactive(False)
            raise RuntimeError("inside")
        assert not matplotlib.is_interactive()
    finally:
        matplotlib.interactive(was)


def test_score_histograms_and_frontier_layouts():
    rng = np.random.default_rng(1)
    outputs = {"a": rng.standard_normal((40, 3)), "b": torch.randn(40, 3)}
    labels = rng.integers(0, 3, 40)
    targets = {"a": np.eye(3) * 2, "b": np.eye(3)}
    fig = ip.score_histograms(outputs, labels, targets, bins=5)
    assert len(fig.axes) == 6
    ax = fig.axes[0]
    assert ax.get_title() == "output 0" and ax.get_ylabel() == "a\nimages"
    assert [line.get_xdata()[0] for line in ax.lines] == [2.0, 0.0]  # own target, others' min
    assert fig.axes[3].get_xlabel() == "raw score" and fig.axes[0].get_xlabel() == ""
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "the unit's own class",
        "other classes",
        "target of its own digit (max)",
        "other digits' targets (min)",
    ]
    rows = {
        n: [
            {"weight": w, "median_rel_error": e, "n_agree": k}
            for w, e, k in [(0.0, 1e-4, 1), (1e-3, 1e-3, 5), (1e-2, 1e-2, 9)]
        ]
        for n in ("fcnn1", "fcnn5")
    }
    fig = ip.frontier(rows)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["fcnn1", "fcnn5"]
    xs = fig.axes[0].lines[0].get_xdata()
    np.testing.assert_allclose(xs, [1e-4, 1e-3, 1e-2])  # weight 0 drawn at a tenth of 1e-3
    fig = ip.frontier(rows, chosen={"fcnn1": 1e-3, "fcnn5": 0.0}, required=5)
    for ax, at in zip(fig.axes[:2], (1e-3, 1e-4), strict=True):  # weight 0 at its own place
        marks = [line for line in ax.lines if line.get_linestyle() == "-."]
        assert [line.get_xdata()[0] for line in marks] == [pytest.approx(at)]
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert texts[0].startswith("chosen weight") and texts[-1] == "5/10 recognised"
    twins = [ax for ax in fig.axes if ax.get_ylabel().startswith("classes recognised")]
    assert [line.get_ydata()[0] for t in twins for line in t.lines if line.get_linestyle() == ":"]
    assert all(
        line.get_ydata()[0] == 5 for t in twins for line in t.lines if line.get_linestyle() == ":"
    )


def _grid_images(fig, n_rows, n_cols):
    """The images of an image_grid, [row][col] (None where a cell is empty)."""
    axes = np.array(fig.axes).reshape(n_rows, n_cols)
    return [[ax.images[0] if ax.images else None for ax in row] for row in axes]


def test_signed_scales_are_zero_centred_diverging_and_grouped_as_asked():
    rows = [
        np.array([[-1.0, 0.5, 0.2, 0.0], [3.0, 2.0, 1.0, 0.0]]),  # signed-column
        np.array([[0.1, -0.2, 0.0, 0.0], [-8.0, 1.0, 1.0, 1.0]]),  # signed-row
        np.array([[0.001, -0.002, 0.0, 0.0], [5.0, -0.5, 0.0, 0.0]]),  # signed-image
        np.array([[-4.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]),  # signed-column again
    ]
    fig = plots.image_grid(
        rows, scale=["signed-column", "signed-row", "signed-image", "signed-column"]
    )
    im = _grid_images(fig, 4, 2)
    for row in im:
        for image in row:
            lo, hi = image.get_clim()
            assert lo == -hi and hi > 0  # symmetric around zero: white is zero
            assert image.get_cmap().name == plots.DIVERGING
    # signed-column: one scale per column over the signed-column rows (max |value|)
    assert im[0][0].get_clim() == im[3][0].get_clim() == (-4.0, 4.0)
    assert im[0][1].get_clim() == im[3][1].get_clim() == (-3.0, 3.0)
    # signed-row: one scale for the whole row
    assert im[1][0].get_clim() == im[1][1].get_clim() == (-8.0, 8.0)
    # signed-image: each image its own, so a tiny image is not blank beside a large one
    assert im[2][0].get_clim() == (-0.002, 0.002)
    assert im[2][1].get_clim() == (-5.0, 5.0)
    # an all-zero image gets a unit scale, not an empty one
    zero = plots.image_grid([np.zeros((1, 4))], scale="signed-image")
    assert _grid_images(zero, 1, 1)[0][0].get_clim() == (-1.0, 1.0)
    # grey scales keep the grey colormap beside signed rows
    mixed = plots.image_grid([rows[0], np.ones((2, 4)) * 0.5], scale=["signed-row", "unit"])
    assert _grid_images(mixed, 2, 2)[1][0].get_cmap().name == "gray"


def test_each_row_can_have_its_own_scale():
    """The signal-space row on its own scale: its smallest image is not drawn on the scale of
    the weights above it."""
    weights = np.array([[10.0, -10.0, 0.0, 0.0], [9.0, -9.0, 0.0, 0.0]])
    signal = np.array([[1.0, -1.0, 0.0, 0.0], [0.01, -0.01, 0.0, 0.0]])
    fig = plots.image_grid([weights, signal], scale=["signed-row", "signed-image"])
    im = _grid_images(fig, 2, 2)
    assert im[0][0].get_clim() == im[0][1].get_clim() == (-10.0, 10.0)
    assert im[1][0].get_clim() == (-1.0, 1.0) and im[1][1].get_clim() == (-0.01, 0.01)
    shared = plots.image_grid([weights, signal], scale="signed-column")
    assert _grid_images(shared, 2, 2)[1][1].get_clim() == (-9.0, 9.0)  # the paper's: shared


def test_colour_bars_one_per_image_or_one_per_shared_row():
    rows = [np.ones((3, 4)), -np.ones((3, 4)), np.ones((2, 4))]
    fig = plots.image_grid(rows, scale=["signed-image", "signed-row", "unit"], colorbar=True)
    assert len(fig.axes) == 9  # the bars are insets of the images' axes
    axes = np.array(fig.axes).reshape(3, 3)
    bars = [bar for ax in fig.axes for bar in ax.child_axes]
    assert len(bars) == 3 + 1 + 1  # each signed-image, one for the row, one for the unit row
    # a bar shows its image's scale
    assert bars[0].get_ylim() == pytest.approx(axes[0, 0].images[0].get_clim())
    assert len(axes[0, 1].child_axes) == 1 and len(axes[1, 1].child_axes) == 0
    assert len(axes[1, 2].child_axes) == 1  # the end of the shared row
    assert len(axes[2, 1].child_axes) == 1 and not axes[2, 2].axison  # the ragged row's end
    assert not plots.image_grid(rows, scale="row").axes[0].child_axes  # none unless asked


def test_head_spectra_one_panel_per_layer_and_projection_one_line_per_head():
    s = [np.array([3.0, 2.0, 1.0]), np.array([4.0, 1.0, 0.5])]
    spectra = {"0": {"Q": s, "K": s[:1]}, "1": {"Q": s, "K": s}}
    fig = plots.head_spectra(spectra)
    assert len(fig.axes) == 4
    lines = [len(ax.get_lines()) for ax in fig.axes]
    assert lines == [2, 1, 2, 2]
    assert np.array_equal(fig.axes[0].get_lines()[1].get_ydata(), s[1])
    assert fig.axes[0].get_yscale() == "log"


def test_in_a_notebook_save_figure_shows_the_saved_png_and_closes_the_figure(tmp_path, monkeypatch):
    from IPython import display as ipd

    shown = []
    monkeypatch.setattr(ipd, "display", lambda obj: shown.append(obj))
    fig = plots.spectrum([3.0, 1.0])
    plots.save_figure(fig, tmp_path / "agg.png")  # not a notebook: nothing shown, still open
    assert shown == [] and plt.fignum_exists(fig.number)
    monkeypatch.setattr(
        plots.plt, "get_backend", lambda: "module://matplotlib_inline.backend_inline"
    )
    path = plots.save_figure(fig, tmp_path / "f.png", pdf=True)
    (image,) = shown
    assert image.data == path.read_bytes()  # the file, not a second drawing
    with Image.open(path) as img:
        width = img.size[0]
    assert image.width == round(width * 110 / 150)  # the size it has on screen (figure.dpi)
    assert not plt.fignum_exists(fig.number)


def test_bars_name_the_reference_line_and_label_a_short_log_axis():
    """fig2_per_layer: the paper's dashed line is in the legend, and a log axis over values
    between 0.01 and 0.1 is labelled at plain numbers between the powers of ten (it had ticks
    at 1 and 10 only, so 1.00 against 1.08 could not be read)."""
    values = {"trained": np.array([0.012, 0.03, 0.08]), "init": np.array([0.02, 0.05, 0.07])}
    fig = plots.grouped_bars(
        values, ["a", "b", "c"], log=True, reference=0.07, reference_label="paper"
    )
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "paper" in labels and "trained" in labels
    fig.canvas.draw()
    low, high = ax.get_ylim()
    shown = [
        float(t.get_text().replace("−", "-"))
        for t in ax.get_yticklabels()
        if t.get_text() and low <= t.get_position()[1] <= high
    ]
    assert len(shown) >= 2 and any(not math.log10(v).is_integer() for v in shown)
    plt.close(fig)
