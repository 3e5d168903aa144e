"""Compare two runs' metrics, number by number: what a refactor must leave identical.

    python bench/compare_runs.py results/before results/after

Reads every ``metrics/*.json`` of both runs, flattens them to ``file:path.to.leaf`` values,
and prints each leaf that differs, is missing on one side, or (with ``--rtol``) differs by
more than that. Timings (keys named ``seconds`` or ending in ``_seconds``, ``wall``) differ
from run to run and are left out. Exit status 1 when anything else differs.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

TIMING_KEYS = ("seconds", "wall")


def leaves(obj: Any, path: str = "") -> dict[str, Any]:
    """``{"a.b.0": value}`` for every leaf of a JSON value."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if k in TIMING_KEYS or str(k).endswith("_seconds"):
                continue
            out.update(leaves(v, f"{path}.{k}" if path else str(k)))
        return out
    if isinstance(obj, list):
        out = {}
        for i, v in enumerate(obj):
            out.update(leaves(v, f"{path}.{i}"))
        return out
    return {path: obj}


def run_leaves(folder: Path) -> dict[str, Any]:
    found = {}
    for path in sorted((folder / "metrics").glob("*.json")):
        found.update(
            {f"{path.stem}:{k}": v for k, v in leaves(json.loads(path.read_text())).items()}
        )
    if not found:
        raise SystemExit(f"{folder}/metrics holds no metrics")
    return found


def same(a: Any, b: Any, rtol: float) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))
    return a == b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default: none)")
    ap.add_argument("--ignore", action="append", default=[], help="skip leaves containing this")
    args = ap.parse_args(argv)
    a, b = run_leaves(args.before), run_leaves(args.after)
    keys = sorted(set(a) | set(b))
    keys = [k for k in keys if not any(s in k for s in args.ignore)]
    differ = [k for k in keys if k not in a or k not in b or not same(a[k], b[k], args.rtol)]
    for k in differ:
        print(f"{k}: {a.get(k, '<missing>')!r} -> {b.get(k, '<missing>')!r}")
    print(f"{len(keys)} numbers compared, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
