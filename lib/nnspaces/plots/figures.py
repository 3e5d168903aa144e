"""Figures in one style: image grids with the paper's per-column grey scale (or a zero-centred
diverging scale for signed images), spectra, bars.

Plotting never computes: every function takes arrays the library already produced and
returns a matplotlib Figure (the caller saves it with :func:`save_figure`). Each function
draws inside :func:`style` (a ``matplotlib.style.context``), so importing this module changes
no global setting and a user's own figures keep their look.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch

from ..files import atomic_write

#: One style for every figure of the repository.
STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "image.cmap": "gray",
    "image.interpolation": "nearest",
}

#: The colormap of signed images (weights, singular vectors, residuals): white at zero, red
#: positive, blue negative; every signed scale is symmetric, ``vmin == -vmax``.
DIVERGING = "RdBu_r"
#: The scales :func:`image_grid` draws on a signed, zero-centred scale with :data:`DIVERGING`.
SIGNED_SCALES = ("signed-column", "signed-row", "signed-image")

F = TypeVar("F", bound=Callable)


@contextlib.contextmanager
def style():
    """The repository's figure style as a context: ``with style(): ...``. Only the style is
    undone on leaving it: pyplot sets its backend up at its first figure, in a notebook by
    turning interactive mode on, and that stays on (undone, no later figure would be shown
    at the end of its cell)."""
    interactive = matplotlib.is_interactive()
    try:
        with plt.style.context(STYLE):
            try:
                yield
            finally:
                interactive = matplotlib.is_interactive()
    finally:
        matplotlib.interactive(interactive)


def styled(func: F) -> F:
    """Run ``func`` inside :func:`style`."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with style():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _np(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


@styled
def image_grid(
    rows: Sequence[np.ndarray | torch.Tensor],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    scale: str | Sequence[str] = "column",
    image_shape: tuple[int, int] | None = None,
    cell: float = 1.0,
    title: str | None = None,
    colorbar: bool = False,
) -> plt.Figure:
    """A grid of images: ``rows[r][c]`` is drawn at row r, column c.

    Each row is an array ``(n_cols, ...)`` whose items reshape to ``image_shape`` (default:
    square). ``scale`` picks the scale, for all rows or one per row. Grey, min to max:
    ``"column"`` (the paper's: one scale shared by each column, over the rows drawn this way),
    ``"image"`` (each image its own), ``"row"``, or ``"unit"`` (0 to 1, for real images).
    Signed (:data:`SIGNED_SCALES`): the same three groupings, ``"signed-column"``,
    ``"signed-row"``, ``"signed-image"``, drawn with :data:`DIVERGING` on a scale symmetric
    around zero (``-m`` to ``m``, ``m`` the largest absolute value), so white means zero.
    ``captions[r][c]`` is written under image (r, c). ``colorbar``: a colour bar beside every
    image whose scale is its own or its column's, and one at the end of a row that shares one.
    """
    allowed = ("column", "image", "row", "unit", *SIGNED_SCALES)
    scales = [scale] * len(rows) if isinstance(scale, str) else list(scale)
    bad = [s for s in scales if s not in allowed]
    if bad or len(scales) != len(rows):
        raise ValueError(f"bad scale {scale!r}; allowed per row: {', '.join(allowed)}")
    arrays = [_np(r).reshape(len(r), -1) for r in rows]
    n_rows, n_cols = len(arrays), max(len(a) for a in arrays)
    if image_shape is None:
        side = int(round(np.sqrt(arrays[0].shape[1])))
        image_shape = (side, side)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(
            cell * n_cols * (1.4 if colorbar else 1.0),
            cell * n_rows * (1.25 if captions else 1.0),
        ),
        squeeze=False,
    )
    for c in range(n_cols):
        col = [a[c] for a, s in zip(arrays, scales, strict=True) if c < len(a) and s == "column"]
        col_lo = min((v.min() for v in col), default=0.0)
        col_hi = max((v.max() for v in col), default=1.0)
        signed = [s == "signed-column" for s in scales]
        signed_col = _max_abs(
            [a[c] for a, s in zip(arrays, signed, strict=True) if c < len(a) and s]
        )
        for r in range(n_rows):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(arrays[r]):
                ax.axis("off")
                continue
            img = arrays[r][c]
            if scales[r] in SIGNED_SCALES:
                m = {
                    "signed-column": signed_col,
                    "signed-row": _max_abs([arrays[r]]),
                    "signed-image": _max_abs([img]),
                }[scales[r]]
                im = ax.imshow(img.reshape(image_shape), vmin=-m, vmax=m, cmap=DIVERGING)
            else:
                lo, hi = {
                    "column": (col_lo, col_hi),
                    "image": (img.min(), img.max()),
                    "row": (arrays[r].min(), arrays[r].max()),
                    "unit": (0.0, 1.0),
                }[scales[r]]
                im = ax.imshow(img.reshape(image_shape), vmin=lo, vmax=hi if hi > lo else lo + 1)
            row_wide = scales[r] in ("row", "unit", "signed-row")
            if colorbar and (not row_wide or c == len(arrays[r]) - 1):
                _colour_bar(fig, ax, im)
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[c])
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center")
            if captions is not None and captions[r][c]:
                ax.set_xlabel(captions[r][c], fontsize=6.5)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _max_abs(arrays: Sequence[np.ndarray]) -> float:
    """The largest absolute value in ``arrays`` (1 where there is none, or all are zero)."""
    m = max((float(np.abs(a).max()) for a in arrays if a.size), default=0.0)
    return m if m > 0 else 1.0


def _colour_bar(fig: plt.Figure, ax: plt.Axes, im) -> None:
    """A thin colour bar just right of ``ax``, in an inset, so the image keeps its size."""
    cax = ax.inset_axes([1.04, 0.0, 0.07, 1.0])
    bar = fig.colorbar(im, cax=cax)
    bar.ax.tick_params(labelsize=7, length=2, pad=1)
    bar.ax.yaxis.get_offset_text().set_fontsize(7)


@styled
def spectrum(
    singular_values: np.ndarray | Sequence[float],
    *,
    condition_number: float | None = None,
    label: str | None = None,
    ax: plt.Axes | None = None,
    log: bool = True,
) -> plt.Figure:
    """Singular values in decreasing order (log scale by default), condition number in the
    title."""
    s = _np(np.asarray(singular_values, dtype=float))
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 2.6))
    else:
        fig = ax.figure
    ax.plot(np.arange(len(s)), s, "o-", ms=3, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("index i")
    ax.set_ylabel("singular value $s_i$")
    if condition_number is not None:
        ax.set_title(f"condition number {condition_number:.3g}")
    if label:
        ax.legend()
    return fig


@styled
def grouped_bars(
    values: dict[str, Sequence[float]],
    labels: Sequence[str],
    *,
    ylabel: str = "",
    title: str | None = None,
    log: bool = False,
    stacked: bool = False,
    figsize: tuple[float, float] = (7, 2.8),
    reference: float | None = None,
    reference_label: str | None = None,
) -> plt.Figure:
    """Bars for each label, one bar (or stacked segment) per series in ``values``.

    ``reference`` draws a dashed horizontal line (e.g. a paper's number), named in the legend
    by ``reference_label``. A ``log`` axis that spans less than four decades is labelled in
    plain numbers between the powers of ten (:func:`_readable_log_ticks`).
    """
    fig, ax = plt.subplots(figsize=figsize)
    x = np.arange(len(labels))
    n = len(values)
    width = 0.8 if stacked else 0.8 / max(n, 1)
    bottom = np.zeros(len(labels))
    for i, (name, v) in enumerate(values.items()):
        v = np.asarray(v, dtype=float)
        if stacked:
            ax.bar(x, v, width, bottom=bottom, label=name)
            bottom += v
        else:
            ax.bar(x - 0.4 + width * (i + 0.5), v, width, label=name)
    if reference is not None:
        ax.axhline(reference, ls="--", c="k", lw=0.8, label=reference_label)
    ax.set_xticks(
        x,
        labels,
        rotation=45 if max(len(s) for s in labels) > 3 else 0,
        ha="right" if max(len(s) for s in labels) > 3 else "center",
    )
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
        _readable_log_ticks(ax, [v for v in values.values()])
    if title:
        ax.set_title(title)
    if n > 1 or reference_label:
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def _readable_log_ticks(ax: plt.Axes, series: Sequence[Sequence[float]]) -> None:
    """Label a log axis in plain numbers at 1, 2 and 5 times the powers of ten (1 and 3 times
    them beyond two decades), when the positive values span less than four decades (else
    matplotlib's powers of ten stay)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    v = np.concatenate([np.asarray(s, dtype=float).ravel() for s in series])
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0 or v.max() / v.min() >= 1e4:
        return
    decades = math.log10(v.max() / v.min())
    subs = (1.0, 2.0, 5.0) if decades <= 2 else (1.0, 3.0)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=subs))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())


@styled
def save_figure(fig: plt.Figure, path: str | Path, *, pdf: bool = False) -> Path:
    """Save ``fig`` as PNG (and PDF beside it when asked), creating folders; returns the
    PNG path. In a notebook (matplotlib's inline backend) the cell shows the saved PNG, at
    the size the figure would have on screen, and the figure is closed: it is drawn once,
    not once more for the inline display (a grid of 120 images takes about a second to
    draw)."""
    path = Path(path)
    png = None
    for target in [path, path.with_suffix(".pdf")] if pdf else [path]:
        buf = io.BytesIO()
        fig.savefig(buf, format=target.suffix.lstrip("."))
        atomic_write(target, buf.getvalue())
        if target.suffix.lower() == ".png":
            png = buf.getvalue()
    if png is not None and "inline" in plt.get_backend():
        from IPython.display import Image, display

        width = int.from_bytes(png[16:20], "big")  # the PNG header's width in pixels
        display(Image(data=png, width=round(width * STYLE["figure.dpi"] / STYLE["savefig.dpi"])))
        plt.close(fig)
    return path


@styled
def spread_figure(summary: Sequence[dict], kind: str, *, log: bool = False) -> plt.Figure:
    """A sweep's spread of one ``kind`` of quantity (rows of
    :func:`~nnspaces.runner.sweep.aggregate.collect`), one panel per group of runs: each run's
    value (dots), the mean with its 95% interval (bar) and the paper's value (red cross)."""
    rows = [r for r in summary if r["kind"] == kind and r["n"]]
    groups = list(dict.fromkeys(r["group"] for r in rows))
    networks = list(dict.fromkeys(r["network"] for r in rows))
    rows = sorted(rows, key=lambda r: networks.index(r["network"]))  # by network
    labels = list(dict.fromkeys(f"{r['network']} {r['name']}".strip() for r in rows))
    width = max(5.0, 0.3 * len(labels) + 2.5)
    height = 2.8 * len(groups) + (1.8 if max(map(len, labels)) > 12 else 0.6)
    fig, axes = plt.subplots(len(groups), 1, figsize=(width, height), squeeze=False, sharex=True)
    rng = np.random.default_rng(0)
    for ax, group in zip(axes[:, 0], groups, strict=True):
        for r in (r for r in rows if r["group"] == group):
            x = labels.index(f"{r['network']} {r['name']}".strip())
            v = [v for v in r["values"] if v is not None and math.isfinite(v)]
            if log:
                v = [max(a, 1e-17) for a in v]
            ax.plot(x + rng.uniform(-0.15, 0.15, len(v)), v, ".", color="0.45", ms=4)
            if r["low"] is not None:
                low = max(r["low"], min(v)) if log else r["low"]  # log axis
                lo, hi = r["mean"] - low, r["high"] - r["mean"]
                ax.errorbar(
                    x,
                    r["mean"],
                    yerr=[[lo], [hi]],
                    fmt="o",
                    color="C0",
                    ms=4,
                    capsize=3,
                    lw=1.2,
                )
            if r["paper"] is not None:
                ax.plot(x, r["paper"], "x", color="C3", ms=7, mew=2)
        ax.set_title(group)
        ax.set_ylabel(kind)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        if log:
            ax.set_yscale("log")
    axes[-1, 0].set_xticks(range(len(labels)), labels, rotation=60, ha="right")
    handles = [
        plt.Line2D([], [], ls="", marker=".", color="0.45", label="one run"),
        plt.Line2D([], [], ls="-", marker="o", color="C0", label="mean, 95% interval"),
        plt.Line2D([], [], ls="", marker="x", color="C3", mew=2, label="paper (MNIST)"),
    ]
    axes[0, 0].legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False
    )
    fig.tight_layout()
    return fig


@styled
def head_spectra(spectra: Mapping[str, Mapping[str, Sequence[np.ndarray]]]) -> plt.Figure:
    """Singular values of attention heads: ``spectra[layer][projection]`` is one array of
    singular values per head (decreasing); one panel per layer (rows) and projection
    (columns), one line per head, log scale."""
    layers = list(spectra)
    projections = list(dict.fromkeys(p for by in spectra.values() for p in by))
    fig, axes = plt.subplots(
        len(layers),
        len(projections),
        figsize=(2.3 * len(projections), 1.9 * len(layers)),
        squeeze=False,
        sharey=True,
    )
    for r, layer in enumerate(layers):
        for c, proj in enumerate(projections):
            ax = axes[r, c]
            for head, s in enumerate(spectra[layer].get(proj, [])):
                s = _np(s)
                ax.plot(np.arange(1, len(s) + 1), s, ".-", ms=3, lw=0.8, label=f"head {head}")
            ax.set_yscale("log")
            if r == 0:
                ax.set_title(proj)
            if c == 0:
                ax.set_ylabel(f"{layer}\nsingular value", fontsize=7)
            if r == len(layers) - 1:
                ax.set_xlabel("index i")
    axes[0, -1].legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig
