"""Figures of inverse images (Figure 3, lessons 4 and 5): signed images on a zero-centred
diverging scale with a colour bar, null-space samples beside their differences, grids that
mark chosen images (a caller says what a frame means), solvers' error against their steps, the
score histograms the paper's targets come from, and the frontier a prior's weight buys.

Like :mod:`nnspaces.plots.figures` (whose style these figures share), nothing here computes: every
function takes arrays the library produced and returns a matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .figures import DIVERGING, _max_abs, _np, styled


def _inside_unit(a: np.ndarray) -> bool:
    finite = a[np.isfinite(a)]
    return finite.size > 0 and finite.min() >= 0.0 and finite.max() <= 1.0


def _limit(a: np.ndarray) -> float:
    """The half-width of a zero-centred scale for ``a``: its largest finite |value|."""
    return _max_abs([a[np.isfinite(a)]])


@styled
def signed_grid(
    rows: Sequence[np.ndarray | torch.Tensor],
    *,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    signed: Sequence[bool] | None = None,
    marks: Sequence[Sequence[bool]] | None = None,
    title: str | None = None,
    caption_label: str = "rel. err / p(c)",
    mark_label: str = "marked",
    cell: float = 1.0,
) -> plt.Figure:
    """A grid of images, one scale per row, with that row's colour bar at its end.

    A row whose pixels all lie in [0, 1] is drawn in grey on [0, 1] (real images); any other
    row (or every row with ``signed[r]`` True) on a zero-centred diverging scale from
    ``-m`` to ``m``, ``m`` the row's largest |pixel|, so that the sign and the size of a pixel
    read off the colour. ``captions[r][c]`` goes under image (r, c), and ``caption_label``
    says what they are (in the title). ``marks[r][c]`` True frames image (r, c) in red, and
    ``mark_label`` says what a frame means (in the title).
    """
    arrays = [_np(r).astype(float).reshape(len(r), -1) for r in rows]
    n_rows, n_cols = len(arrays), max(len(a) for a in arrays)
    side = int(round(np.sqrt(arrays[0].shape[1])))
    if signed is None:
        signed = [not _inside_unit(a) for a in arrays]
    fig, axes = plt.subplots(
        n_rows,
        n_cols + 1,
        figsize=(cell * n_cols + 0.9, cell * n_rows * (1.3 if captions else 1.0) + 0.5),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.0] * n_cols + [0.12]},
    )
    for r, a in enumerate(arrays):
        if signed[r]:
            m = _limit(a)
            kw = {"cmap": DIVERGING, "vmin": -m, "vmax": m}
        else:
            kw = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
        im = None
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(a):
                ax.axis("off")
                continue
            im = ax.imshow(a[c].reshape(side, side), **kw)
            if r == 0 and col_labels is not None:
                ax.set_title(col_labels[c])
            if c == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[r], rotation=0, ha="right", va="center")
            if captions is not None and captions[r][c]:
                ax.set_xlabel(captions[r][c], fontsize=6.5)
            if marks is not None and marks[r][c]:
                for spine in ax.spines.values():
                    spine.set_visible(True)
                    spine.set_edgecolor("C3")
                    spine.set_linewidth(2.5)
        cbar = fig.colorbar(im, cax=axes[r, -1])
        cbar.ax.tick_params(labelsize=7)
    heading = title or ""
    if captions is not None:
        heading += ("\n" if heading else "") + f"under each image: {caption_label}"
    if marks is not None:
        heading += f"; red frame: {mark_label}"
    if heading:
        fig.suptitle(heading)
    fig.tight_layout()
    return fig


@styled
def null_space_figure(
    samples: dict[str, np.ndarray | torch.Tensor], *, digit: int, cell: float = 1.0
) -> plt.Figure:
    """Per network two rows: the pre-images of one output (``samples[name]``, ``(k, ...)``) on
    a zero-centred diverging scale, and each one's difference from the first (a null-space
    component) on its own diverging scale; each row's pixel range in its label. The title
    says, per network, how large the differences are against the images' range (below 5%
    the images look alike although they differ)."""
    rows, labels, shares = [], [], []
    for name, x in samples.items():
        x = _np(x).astype(float).reshape(len(x), -1)
        diff = x - x[0]
        span = float(np.nanmax(x) - np.nanmin(x)) or 1.0
        share = float(np.nanmax(np.abs(diff))) / span
        shares.append(f"{name} {share:.1%}" + (" (look alike)" if share < 0.05 else ""))
        rows += [x, diff]
        labels += [
            f"{name}\nimages\n[{np.nanmin(x):.2g}, {np.nanmax(x):.2g}]",
            f"{name}\nx_i - x_1\n[{np.nanmin(diff):.2g}, {np.nanmax(diff):.2g}]",
        ]
    k = max(len(r) for r in rows)
    return signed_grid(
        rows,
        row_labels=labels,
        col_labels=[f"sample {i + 1}" for i in range(k)],
        signed=[True] * len(rows),
        title=f"digit {digit}: {k} pre-images of one output, and their differences from sample 1 "
        "(own scale per row; pixel range in brackets)\nlargest difference against the images' "
        "range: " + ", ".join(shares),
        cell=cell,
    )


@styled
def error_histories(
    histories: Mapping[str, Mapping[str, Sequence[tuple[int, float]]]],
) -> plt.Figure:
    """Median relative error against the solver step: ``histories[panel][line]`` is a list
    of ``(step, error)``; one panel per key (e.g. network), one line per method, log scale."""
    fig, axes = plt.subplots(
        1, len(histories), figsize=(2.8 * len(histories), 2.5), squeeze=False, sharey=True
    )
    for ax, (name, lines) in zip(axes[0], histories.items(), strict=True):
        for label, hist in lines.items():
            if hist:
                steps, err = zip(*hist, strict=True)
                ax.plot(steps, np.maximum(err, 1e-17), ".-", ms=3, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(name)
    axes[0, 0].set_ylabel("median relative error")
    axes[0, -1].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


@styled
def score_histograms(
    outputs: dict[str, np.ndarray | torch.Tensor],
    labels: np.ndarray | torch.Tensor,
    targets: dict[str, np.ndarray | torch.Tensor] | None = None,
    *,
    bins: int = 40,
) -> plt.Figure:
    """Histograms of each output unit's raw scores over the data: one row per network, one
    column per output unit j, images of class j in colour and all others in grey.

    ``outputs[name]`` is ``(N, K)``; ``targets[name]`` ``(K, K)`` (row c = target for class c)
    marks the paper's target values: ``t_c[c]`` (the class's own maximum, solid) and the
    minimum every other class's target asks of unit j (dashed).
    """
    labels = _np(labels)
    names = list(outputs)
    k = _np(outputs[names[0]]).shape[1]
    fig, axes = plt.subplots(len(names), k, figsize=(1.5 * k, 1.4 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        out = _np(outputs[name])
        for j in range(k):
            ax = axes[r, j]
            edges = np.histogram_bin_edges(out[:, j], bins=bins)
            ax.hist(out[labels != j, j], bins=edges, color="0.6", label="other classes")
            ax.hist(out[labels == j, j], bins=edges, color="C0", alpha=0.8, label=f"class {j}")
            if targets is not None:
                t = _np(targets[name])
                ax.axvline(t[j, j], color="C3", lw=1)
                others = np.delete(t[:, j], j)
                ax.axvline(others.min(), color="C3", lw=1, ls="--")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(f"output {j}")
            if j == 0:
                ax.set_ylabel(f"{name}\nimages")
            if r == len(names) - 1:
                ax.set_xlabel("raw score", fontsize=7)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color="C0", alpha=0.8, label="the unit's own class"),
        plt.Rectangle((0, 0), 1, 1, color="0.6", label="other classes"),
    ]
    if targets is not None:
        handles += [
            plt.Line2D([], [], color="C3", lw=1, label="target of its own digit (max)"),
            plt.Line2D([], [], color="C3", lw=1, ls="--", label="other digits' targets (min)"),
        ]
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(handles),
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


@styled
def frontier(
    rows: dict[str, Sequence[dict]],
    *,
    x: str = "weight",
    error: str = "median_rel_error",
    agree: str = "n_agree",
    n_classes: int = 10,
    xlabel: str = "prior weight",
    chosen: dict[str, float] | None = None,
    required: int | None = None,
) -> plt.Figure:
    """The trade-off a prior buys, one panel per network: output error (log scale, left
    axis) and the number of classes other networks recognise (right axis) against the
    prior's weight. ``rows[name]`` is a list of dicts with keys ``x``, ``error``, ``agree``.
    ``chosen[name]``: a weight to mark (a vertical line); ``required``: the recognition
    count the choice asks for (a labelled dotted line; 9 when not given)."""
    fig, axes = plt.subplots(1, len(rows), figsize=(3.4 * len(rows), 2.8), squeeze=False)
    for ax, (name, pts) in zip(axes[0], rows.items(), strict=True):
        xs = np.array([p[x] for p in pts], dtype=float)
        pos = np.where(xs > 0, xs, np.nan)
        # draw weight 0 at a tenth of the smallest positive weight on the log axis
        xs = np.where(xs > 0, xs, np.nanmin(pos) / 10 if np.any(xs > 0) else 1.0)
        ax.plot(xs, [p[error] for p in pts], "o-", c="C0")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel + " (0 at far left)")
        ax.set_ylabel("median relative error", color="C0")
        twin = ax.twinx()
        twin.plot(xs, [p[agree] for p in pts], "s--", c="C1")
        twin.set_ylim(-0.5, n_classes + 0.5)
        twin.set_ylabel("classes recognised by the others", color="C1")
        need = 9 if required is None else required
        twin.axhline(need, c="C1", lw=0.6, ls=":", label=f"{need}/{n_classes} recognised")
        if chosen is not None and name in chosen:
            w = chosen[name]
            at = w if w > 0 else (np.nanmin(pos) / 10 if np.any(np.isfinite(pos)) else 1.0)
            ax.axvline(at, c="k", lw=1, ls="-.", label=f"chosen weight {w:g}")
            lines = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            ax.legend(handles=lines, fontsize=6.5, frameon=False, loc="lower left")
        ax.set_title(name)
    fig.tight_layout()
    return fig
