"""A sweep's folder: finished runs and their records, atomic storing, the lock (see
:mod:`nnspaces.runner.sweep.engine`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ...files import write_json
from .grid import PlannedRun, SweepSpec

RECORD = "record.json"


# --------------------------------------------------------------------------- the sweep's folder


def run_folder(folder: Path, run_id: str) -> Path:
    return folder / "runs" / run_id


def read_record(folder: Path, run_id: str) -> dict[str, Any] | None:
    """A run's record.json, or None when it is missing or unreadable."""
    try:
        record = json.loads((run_folder(folder, run_id) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_finished(folder: Path, run: PlannedRun) -> bool:
    """Whether ``run`` finished earlier with these parameters and every file it wrote is
    there at its recorded size (anything less is redone, never half-used)."""
    record = read_record(folder, run.id)
    if not record or record.get("status") != "ok" or record.get("parameters") != run.parameters:
        return False
    base = run_folder(folder, run.id)
    files = record.get("files")
    if not isinstance(files, dict):
        return False
    for rel, size in files.items():
        try:
            if (base / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def store(folder: Path, run: PlannedRun, outcome: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``run``'s files and record into ``runs/<id>``: first into a hidden partial
    folder, the record last, then renamed into place, replacing an earlier attempt."""
    files = outcome.get("files") or {}
    record = {
        "id": run.id,
        "point": run.point,
        "parameters": run.parameters,
        **{k: v for k, v in outcome.items() if k not in ("files", "id")},
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "files": {rel: len(data) for rel, data in files.items()},
    }
    runs = folder / "runs"
    partial = runs / f".{run.id}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    for rel, data in files.items():
        target = (partial / rel).resolve()
        if not target.is_relative_to(partial.resolve()):
            raise ValueError(f"run {run.id} returned a file outside its folder: {rel!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    write_json(partial / RECORD, record)
    final = run_folder(folder, run.id)
    if final.exists():
        shutil.rmtree(final)
    os.rename(partial, final)
    return record


#: Seconds a sweep waits for a lock whose holder has ended (its worker processes may still be
#: exiting) before it gives up.
STALE_WAIT = 30.0


@contextmanager
def locked(folder: Path, *, stale_wait: float = STALE_WAIT) -> Iterator[None]:
    """Hold ``folder``'s sweep lock (``folder/.lock``, which names its holder: ``pid N on
    host``). A holder that is alive is refused at once; one that has ended (a killed client)
    is waited for up to ``stale_wait`` seconds and then taken."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    lock = FileLock(path, on_acquired=_sign)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        pid, host, alive = _holder(path)
        who = f"pid {pid} on {host}" if pid is not None else "its holder unnamed"
        if alive:
            state = ", alive" if pid is not None and host == socket.gethostname() else ""
            raise RuntimeError(
                f"another sweep is running in {folder} ({who}{state}); wait for it to finish, "
                "or give this one another --name"
            ) from None
        try:
            lock.acquire(timeout=stale_wait)
        except Timeout:
            raise RuntimeError(
                f"{folder} is still locked {stale_wait:g} s after its holder ended ({who}, not "
                "alive; its processes may still be exiting): try again, or give this sweep "
                "another --name"
            ) from None
    try:
        yield
    finally:
        lock.release()


def _sign(fd: int) -> None:
    """Write this process into a lock file it has just locked."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)


def _holder(path: Path) -> tuple[int | None, str, bool]:
    """The pid and host a lock file names, and whether that process is alive (one on another
    host, or a file that names none, counts as alive: nothing here can tell)."""
    try:
        words = path.read_text().split()
    except OSError:
        words = []
    if len(words) != 4 or words[0] != "pid" or not words[1].isdigit() or words[2] != "on":
        return None, "", True
    pid, host = int(words[1]), words[3]
    return pid, host, host != socket.gethostname() or _alive(pid)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs here (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def claim(folder: Path, spec: SweepSpec) -> None:
    """Make ``folder`` this sweep's (refusing a folder that holds something else) and
    remove what a killed client left half-written."""
    if not (folder / "sweep.json").is_file():
        others = [p.name for p in folder.iterdir() if p.name != ".lock"]
        if others:
            raise ValueError(
                f"{folder} exists and is not a sweep's folder (it holds {sorted(others)[:5]}); "
                "give the sweep another --name"
            )
    write_json(folder / "sweep.json", spec.to_dict())
    for partial in (folder / "runs").glob(".*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
