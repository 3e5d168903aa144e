"""Every file the library writes goes through atomic_write: whole or not at all, beside its
destination, with the permissions ``open()`` would give it."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import mode, umask

from nnspaces.files import atomic_write, jsonable, leaves, to_json, write_json


def test_text_bytes_and_folders(tmp_path):
    path = tmp_path / "a" / "b" / "note.txt"
    assert atomic_write(path, "grüße ∑\n") == path
    assert path.read_bytes() == "grüße ∑\n".encode()
    assert atomic_write(str(path), b"\x00\xffraw") == path  # a str path comes back as a Path
    assert path.read_bytes() == b"\x00\xffraw"
    assert atomic_write(path, bytearray(b"ba")) and path.read_bytes() == b"ba"
    assert sorted(p.name for p in path.parent.iterdir()) == ["note.txt"]


def test_a_writer_gets_a_temporary_path_beside_with_the_suffix(tmp_path):
    path = tmp_path / "arrays.npz"
    seen = []

    def writer(tmp):
        seen.append(Path(tmp))
        assert Path(tmp).exists() and not path.exists()  # the destination appears only at the end
        np.savez(tmp, a=np.arange(3))  # appends .npz unless the name ends with it

    assert atomic_write(path, writer) == path
    (tmp,) = seen
    assert tmp.parent == path.parent and tmp != path
    assert tmp.name.endswith(".npz") and tmp.name.startswith(".")
    assert not tmp.exists()
    np.testing.assert_array_equal(np.load(path)["a"], np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz"]


@pytest.mark.parametrize(
    "mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o027, 0o640)]
)
@pytest.mark.parametrize("kind", ["text", "bytes", "writer", "json", "replace"])
def test_permissions_follow_the_umask(tmp_path, mask, expected, kind):
    path = tmp_path / "out.dat"
    if kind == "replace":  # an existing file, replaced: the new one's mode follows the umask
        path.write_text("old")
        path.chmod(0o600 if expected != 0o600 else 0o644)
    with umask(mask):
        if kind == "text" or kind == "replace":
            atomic_write(path, "x")
        elif kind == "bytes":
            atomic_write(path, b"x")
        elif kind == "writer":
            atomic_write(path, lambda p: torch.save({"a": 1}, p))
        else:
            write_json(path, {"a": 1})
    assert mode(path) == expected
    # what open() would give a new file under the same umask
    with umask(mask):
        with open(tmp_path / "plain", "w") as f:
            f.write("x")
    assert mode(tmp_path / "plain") == expected


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old contents")

    def writer(tmp):
        Path(tmp).write_bytes(b"half a fi")
        raise error("interrupted")

    with pytest.raises(error, match="interrupted"):
        atomic_write(path, writer)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    # and where there was no file, there is still none
    fresh = tmp_path / "new" / "x.bin"
    with pytest.raises(error):
        atomic_write(fresh, writer)
    assert not fresh.exists() and list(fresh.parent.iterdir()) == []


def test_unencodable_text_leaves_the_old_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write(path, "\ud800")  # a lone surrogate has no UTF-8
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_the_file_is_replaced_not_rewritten_in_place(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("old")
    link = tmp_path / "other-name"
    os.link(path, link)  # a second name for the old file
    inode = os.stat(path).st_ino
    atomic_write(path, "new")
    assert path.read_text() == "new"
    assert os.stat(path).st_ino != inode  # a new file renamed into place
    assert link.read_text() == "old"  # a reader holding the old file sees it whole


def test_write_json_converts_arrays_tensors_paths_and_metrics(tmp_path):
    class Metrics:
        def to_dict(self):
            return {"k": 2}

    obj = {
        "array": np.array([[1.5, 2.0]]),
        "tensor": torch.tensor([3, 4]),
        "scalar": np.float64(0.25),
        "path": Path("/a/b"),
        "metrics": Metrics(),
        "text": "ü",
    }
    path = tmp_path / "m" / "x.json"
    assert write_json(path, obj) == path
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and '\n  "array"' in text  # indented, ends with a newline
    assert json.loads(text) == {
        "array": [[1.5, 2.0]],
        "tensor": [3, 4],
        "scalar": 0.25,
        "path": "/a/b",
        "metrics": {"k": 2},
        "text": "ü",
    }


def test_write_json_refuses_what_it_cannot_write_and_writes_nothing(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"old": 1}')
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"old": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_non_finite_numbers_are_written_as_null_never_nan(tmp_path):
    """Strict JSON has no NaN: every kind of non-finite number (Python, numpy, in arrays and
    tensors, as a dict value or a list entry) is written as null; finite ones keep their
    value and numpy integers stay integers."""
    obj = {
        "nan": float("nan"),
        "inf": -math.inf,
        "np": np.float32("nan"),
        "array": np.array([[1.0, np.nan], [np.inf, 2.5]]),
        "tensor": torch.tensor([math.nan, 0.5]),
        "count": np.int64(3),
        "flag": np.bool_(True),
        "nested": [{"x": (np.float64(0.25), math.inf)}],
    }
    path = write_json(tmp_path / "x.json", obj)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text

    def refuse(name):
        raise AssertionError(f"{name} in the file")

    assert json.loads(text, parse_constant=refuse) == {
        "nan": None,
        "inf": None,
        "np": None,
        "array": [[1.0, None], [None, 2.5]],
        "tensor": [None, 0.5],
        "count": 3,
        "flag": True,
        "nested": [{"x": [0.25, None]}],
    }
    assert isinstance(jsonable(np.int64(3)), int) and jsonable(np.bool_(False)) is False
    assert to_json({"a": [1, None]}, indent=None) == '{"a": [1, null]}'


def test_leaves_walks_dicts_and_lists_of_dicts_and_keeps_other_lists_whole():
    obj = {
        "a": {"b": [1, 2], "c": {}},
        "rows": [{"x": 1}, {"x": [3, 4]}],
        "grid": [[1, 2], [3]],
        "settings": {"lr": 0.1},
        "text": "t",
    }
    assert list(leaves(obj)) == [
        (("a", "b"), [1, 2]),
        (("a", "c"), {}),
        (("rows", 0, "x"), 1),
        (("rows", 1, "x"), [3, 4]),
        (("grid",), [[1, 2], [3]]),
        (("settings", "lr"), 0.1),
        (("text",), "t"),
    ]
    kept = list(leaves(obj, keep=lambda p: p[-1] != "settings" and not isinstance(p[-1], int)))
    assert [p for p, _ in kept] == [("a", "b"), ("a", "c"), ("grid",), ("text",)]
    assert list(leaves({})) == [((), {})]
