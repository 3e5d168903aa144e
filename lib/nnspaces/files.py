"""Writing files: every file the library writes goes through :func:`atomic_write`.

A file is written to a temporary name beside its destination and renamed into place, so a
reader never sees half a file and an interrupted write leaves the old file (or none) behind.
The temporary file is created with mode ``0o666`` filtered by the process's umask, like any
file ``open(path, "w")`` creates (``tempfile.mkstemp`` would make it ``0o600``: results a
teacher serves with a web server or shares with a group would be unreadable).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
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
    """``obj`` as indented JSON at ``path`` (atomically); arrays and tensors become lists,
    paths strings."""
    return atomic_write(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")
