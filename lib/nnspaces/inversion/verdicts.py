"""Verdicts: what the judges (:mod:`.judges`) read in finished images.

For every image of a set: the class each judge reads, its p(intended digit), and the share of
the image's pixels in [0, 1]; per set, the counts (:func:`verdict_summary`); for a whole saved
``.npz`` of image sets, :func:`judge_file` and the :class:`Verdicts` a notebook shows. Only a
registered judge may give a verdict (:func:`refuse_unless_judge`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..models import JUDGE_PREFIX
from .judges import JUDGES, Judge

#: A set of images "is digits" to the judges when every judge reads at least this share of them
#: as the intended digit, with every pixel in [0, 1] (the issue's goal: 9 of 10).
DIGITS_SHARE = 0.9
#: A pixel counts as inside [0, 1] within this much (float32 images that were clamped).
INSIDE_TOL = 1e-6


def verdicts(
    images: torch.Tensor, classes: Sequence[int], judges: Mapping[str, Judge]
) -> pd.DataFrame:
    """What each judge reads in each image: one row per image with its intended ``digit``,
    ``inside`` (the fraction of its pixels in [0, 1]), ``all_inside``, and per judge
    ``<judge>`` (the class it reads) and ``<judge> p`` (its p(intended class)); ``every judge``:
    all of them read the intended digit; ``digit and inside``: that, with every pixel in
    [0, 1]."""
    images = images.detach().cpu()
    classes = torch.as_tensor(list(classes), dtype=torch.long)
    if len(classes) != len(images):
        raise ValueError(f"{len(images)} images but {len(classes)} classes")
    if not judges:
        raise ValueError("no judges given")
    flat = images.reshape(len(images), -1)
    frame = pd.DataFrame({"digit": classes.numpy()})
    frame["inside"] = ((flat >= -INSIDE_TOL) & (flat <= 1 + INSIDE_TOL)).double().mean(1).numpy()
    frame["all_inside"] = frame["inside"] == 1.0
    finite = torch.isfinite(flat).all(1)  # an image with NaN or inf is read by no judge
    clean = torch.where(finite.view(-1, *[1] * (images.dim() - 1)), images, 0.0)
    agree = torch.ones(len(images), dtype=torch.bool)
    for name, judge in judges.items():
        refuse_unless_judge(judge)
        p = judge.probabilities(clean)[torch.arange(len(images)), classes]
        read = torch.where(finite, judge.read(clean), -1)
        frame[name] = read.numpy()
        frame[f"{name} p"] = torch.where(finite, p, 0.0).numpy()
        agree &= read == classes
    frame["every judge"] = agree.numpy()
    frame["digit and inside"] = frame["every judge"] & frame["all_inside"]
    frame["made"] = finite.numpy()  # False: the solver gave no image (NaN), nothing to judge
    return frame


def refuse_unless_judge(judge: object) -> None:
    """A clear error where something that is not a registered judge is asked for a verdict."""
    if not isinstance(judge, Judge):
        raise TypeError(
            f"{type(judge).__name__} is not a judge: verdicts come from the panel only "
            f"({', '.join(JUDGE_PREFIX + j for j in JUDGES)}; get_judges)"
        )


def image_sets(path: str | Path) -> dict[str, tuple[torch.Tensor, list[int]]]:
    """The image sets of a saved ``.npz`` (:func:`~.imagesets.save_inversions`):
    ``{set: (images, classes)}``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read image sets from {path}: {e}") from e
    sets = {}
    for key in sorted(k[: -len("/images")] for k in arrays if k.endswith("/images")):
        if f"{key}/classes" not in arrays:
            raise ValueError(f"{path}: set {key!r} has no classes (saved by older code?)")
        sets[key] = (torch.from_numpy(arrays[f"{key}/images"]), arrays[f"{key}/classes"].tolist())
    return sets


def judge_file(path: str | Path, judges: Mapping[str, Judge]) -> pd.DataFrame:
    """:func:`verdicts` for every image set of a saved ``.npz``, one row per image, with its
    ``set`` and ``network`` (the set's first path element)."""
    frames = [
        verdicts(images, classes, judges).assign(set=key, network=key.split("/")[0])
        for key, (images, classes) in image_sets(path).items()
    ]
    if not frames:
        raise ValueError(f"{path} holds no image sets")
    frame = pd.concat(frames, ignore_index=True)
    return frame[["set", "network", *[c for c in frame.columns if c not in ("set", "network")]]]


def verdict_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per image set (in the order of ``frame``): the number of images, how many each judge
    reads as the intended digit, how many every judge does (``every judge``), how many of those
    have every pixel in [0, 1] (``digit and inside``), the mean p(intended) per judge and the
    mean fraction of pixels in [0, 1]."""
    names = [c for c in frame.columns if f"{c} p" in frame.columns]
    right = frame.assign(**{n: frame[n] == frame["digit"] for n in names})
    if "made" not in right:  # a verdicts file from before images that failed were counted
        right["made"] = True
    grouped = right.groupby("set", sort=False)
    out = grouped.agg(
        network=("network", "first"),
        images=("digit", "size"),
        made=("made", "sum"),
        **{n: (n, "sum") for n in names},
        **{"every judge": ("every judge", "sum"), "digit and inside": ("digit and inside", "sum")},
        **{f"{n} p": (f"{n} p", "mean") for n in names},
        inside=("inside", "mean"),
    )
    return out.reset_index()


def _listed(rows: pd.DataFrame, column: str) -> str:
    """Each set (without its network) in backticks with its count ``k/n`` of ``column``, or
    ``none``."""
    keys = rows["set"].str.split("/", n=1).str[-1]
    counts = zip(keys, rows[column], rows["images"], strict=True)
    return ", ".join(f"`{key}` {k}/{n}" for key, k, n in counts) or "none"


class Verdicts:
    """The judges' verdicts on a file of image sets: ``frame`` one row per image
    (:func:`judge_file`), ``summary`` one row per set (:func:`verdict_summary`);
    ``recognised(set)`` the digits every judge reads as intended with every pixel in [0, 1]."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.summary = verdict_summary(frame)

    def recognised(self, key: str) -> list[int]:
        rows = self.frame[self.frame["set"] == key]
        if rows.empty:
            raise ValueError(f"no image set {key!r}; sets: {', '.join(self.frame['set'].unique())}")
        return rows.loc[rows["digit and inside"], "digit"].tolist()

    def table(self, sets: Sequence[str] | None = None) -> pd.DataFrame:
        """The summary as shown: per set, ``k/n`` for each judge, for every judge, and for
        every judge with every pixel in [0, 1]; the mean p(intended) per judge."""
        s = self.summary if sets is None else self.summary.set_index("set").loc[list(sets)]
        s = s.reset_index() if sets is not None else s
        names = [c[:-2] for c in s.columns if c.endswith(" p")]
        out = pd.DataFrame({"set": s["set"]})
        for col in ["made", *names, "every judge", "digit and inside"]:
            out[col] = s[col].astype(int).astype(str) + "/" + s["images"].astype(str)
        for n in names:
            out[f"{n} p"] = s[f"{n} p"].round(2)
        return out

    def describe(self, sets: Sequence[str] | None = None) -> str:
        """Markdown, per network: its image sets that every judge reads as the intended digits
        (at least :data:`DIGITS_SHARE` of the images) with every pixel in [0, 1]; those they read
        so but with pixels outside [0, 1]; those they do not; and those where the solver made no
        image at all (NaN, nothing to judge), each with its count. From this file's verdicts
        only."""
        s = self.summary if sets is None else self.summary[self.summary["set"].isin(sets)]
        lines = []
        for network, rows in s.groupby("network", sort=False):
            none_made = rows[rows["made"] == 0]
            rows = rows[rows["made"] > 0]
            read = rows["every judge"] >= DIGITS_SHARE * rows["images"]
            inside = rows["digit and inside"] >= DIGITS_SHARE * rows["images"]
            parts = [
                f"digits to every judge, inside [0, 1]: {_listed(rows[inside], 'digit and inside')}"
            ]
            if (read & ~inside).any():
                parts.append(
                    "read as the digits but with pixels outside [0, 1]: "
                    + _listed(rows[read & ~inside], "every judge")
                )
            parts.append(
                f"read as the digits by every judge in under {DIGITS_SHARE:.0%} of the images: "
                + _listed(rows[~read], "every judge")
            )
            if len(none_made):
                parts.append(f"no image made (every solve failed): {_listed(none_made, 'made')}")
            lines.append(f"- **{network}**: " + "; ".join(parts) + ".")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table().to_string(index=False)

    def _repr_html_(self) -> str:
        return self.table().to_html(index=False)
