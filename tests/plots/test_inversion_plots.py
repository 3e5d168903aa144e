"""Figures of inverse images: signed images on a zero-centred diverging scale with a colour
bar, real images in grey on [0, 1], null-space samples beside their differences, red frames
on the images marked."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nnspaces.plots import inversion as ip  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def images_of(fig):
    """The image artists, per row of the grid (colour-bar axes have none)."""
    return [ax.images[0] for ax in fig.axes if ax.images]


def test_signed_rows_are_zero_centred_and_real_rows_grey_on_the_unit_range():
    rng = np.random.default_rng(0)
    signed = rng.normal(0.2, 2.0, (3, 16))
    signed[0, 0] = -7.5  # the largest |value|: the scale is [-7.5, 7.5]
    real = rng.random((3, 16))
    fig = ip.signed_grid([signed, real], captions=[["a", "b", "c"]] * 2, title="t")
    imgs = images_of(fig)
    assert len(imgs) == 6
    for im in imgs[:3]:
        assert im.get_clim() == (-7.5, 7.5) and im.get_cmap().name == ip.DIVERGING
    for im in imgs[3:]:
        assert im.get_clim() == (0.0, 1.0) and im.get_cmap().name == "gray"
    colorbars = [ax for ax in fig.axes if not ax.images and ax.get_ylim() != (0.0, 1.0)]
    assert len(fig.axes) == 2 * 4 and colorbars  # one colour bar per row
    assert "under each image: rel. err / p(c)" in fig._suptitle.get_text()
    # forced signed: a row inside [0, 1] drawn on a zero-centred scale too
    fig = ip.signed_grid([real], signed=[True])
    lo, hi = images_of(fig)[0].get_clim()
    assert lo == -hi and hi == pytest.approx(real.max())


def test_nan_images_and_marks():
    x = torch.full((2, 16), float("nan"))
    x[1] = torch.linspace(-1, 3, 16)
    fig = ip.signed_grid([x], marks=[[False, True]], mark_label="not the digit to every judge")
    assert images_of(fig)[1].get_clim() == (-3.0, 3.0)  # NaN rows do not set the scale
    axes = [ax for ax in fig.axes if ax.images]
    red = matplotlib.colors.to_rgba("C3")
    assert all(s.get_edgecolor() == red and s.get_visible() for s in axes[1].spines.values())
    assert all(s.get_edgecolor() != red for s in axes[0].spines.values())
    assert "red frame: not the digit to every judge" in fig._suptitle.get_text()


def test_null_space_figure_shows_samples_and_their_differences_with_their_ranges():
    x = torch.zeros(4, 1, 4, 4)
    x[:, 0, 0, 0] = torch.tensor([1.0, 2.0, 3.0, 5.0])
    fig = ip.null_space_figure({"net": x}, digit=3)
    imgs = images_of(fig)
    assert len(imgs) == 8
    diff = np.stack([im.get_array().ravel() for im in imgs[4:]])
    assert diff[:, 0].tolist() == [0.0, 1.0, 2.0, 4.0]  # x_i - x_1
    assert imgs[0].get_clim() == (-5.0, 5.0) and imgs[4].get_clim() == (-4.0, 4.0)
    labels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    assert labels == ["net\nimages\n[0, 5]", "net\nx_i - x_1\n[0, 4]"]


def test_error_histories_plot_each_methods_steps_and_errors():
    fig = ip.error_histories({"fcnn1": {"lm": [(0, 1.0), (1, 1e-3)], "descent": []}})
    (ax,) = fig.axes
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1] and list(line.get_ydata()) == [1.0, 1e-3]
