"""Writing files: every file the library writes goes through :func:`atomic_write`.

A file is written to a temporary name beside its destination and renamed into place, so a
reader never sees half a file and an interrupted write leaves the old file (or none) behind.
The temporary file is created with mode ``0o666`` filtered by the process's umask, like any
file ``open(path, "w")`` creates (``tempfile.mkstemp`` would make it ``0o600``: results a
teacher serves with a web server or shares with a group would be unreadable).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], Any]) -> Path:
    """Write ``data`` to ``path`` atomically and return ``path``; parent folders are made.

    ``data`` is text (written as UTF-8), bytes, or a function that writes the file itself
    given a path (e.g. ``lambda p: torch.save(obj, p)``); the temporary path it gets ends in
    the destination's suffix, so writers that append one (``numpy.savez``) keep the name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        # O_EXCL: never follow or reuse someone else's file; 0o666 & ~umask like open()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON at ``path`` (atomically), through :func:`to_json`."""
    return atomic_write(path, to_json(obj) + "\n")


def write_csv(path: str | Path, table: Any) -> Path:
    """A pandas DataFrame as CSV (no index column), written atomically."""
    return atomic_write(path, table.to_csv(index=False))


def to_json(obj: Any, *, indent: int | None = 2) -> str:
    """``obj`` as strict JSON text (what every JSON file of the library holds): values as
    :func:`jsonable` makes them, so NaN and infinities are ``null``, never ``NaN``."""
    return json.dumps(jsonable(obj), indent=indent, allow_nan=False)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON values: mappings (keys other than text, numbers and None become
    their ``str``), lists and tuples; arrays and tensors of any shape as nested lists; numpy
    scalars as Python numbers; non-finite floats as None; paths as strings; an object with a
    ``to_dict()`` as that dict. Anything else raises a TypeError naming its type."""
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {_key(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return jsonable(obj.tolist())
    if hasattr(obj, "to_dict"):
        return jsonable(obj.to_dict())
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def _key(key: Any) -> Any:
    return key if key is None or isinstance(key, str | int | float) else str(key)


def leaves(
    obj: Any, *, keep: Callable[[tuple], bool] = lambda _: True
) -> Iterator[tuple[tuple, Any]]:
    """A nested JSON value's leaves as (path, value), the path a tuple of keys and list
    indices (``{"a": {"b": [1, 2]}}`` gives ``(("a", "b"), [1, 2])``): dicts are walked (an
    empty one is a leaf), and so are the lists with a dict somewhere inside; any other list is
    one leaf. ``keep(path)`` is asked of every entry; a False leaves it and what it holds
    out."""

    def walk(value: Any, path: tuple) -> Iterator[tuple[tuple, Any]]:
        if isinstance(value, Mapping) and value:
            items: Any = value.items()
        elif isinstance(value, list) and _holds_a_dict(value):
            items = enumerate(value)
        else:
            yield path, value
            return
        for k, v in items:
            if keep((*path, k)):
                yield from walk(v, (*path, k))

    return walk(obj, ())


def _holds_a_dict(values: list) -> bool:
    return any(isinstance(v, Mapping) or (isinstance(v, list) and _holds_a_dict(v)) for v in values)
