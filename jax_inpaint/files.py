"""Writing files safely: atomic writes, output folders checked before the work, exclusive locks.

Every file jax-inpaint writes goes through `atomic_write` (a temporary sibling renamed into place,
removed again on any failure), so an interrupted run, a full disk or an unwritable folder never
leaves a half-written file or a `*.tmp` behind. `check_writable` is called before long work, so a
bad `--out` is reported before the optimisation, not after it. `FolderLock` keeps two runs from
working in one output folder at once.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import tempfile
import time
from typing import Any, Callable, Iterator

from jax_inpaint.errors import InputError

TMP_MARK = ".tmp-"


def _tmp_name(path: str, suffix: str = "") -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}{TMP_MARK}{os.getpid()}{suffix}")


def write_error(path: str, e: OSError) -> InputError:
    """An OSError while writing `path`, as a one-line InputError."""
    return InputError(f"cannot write {path}: {e.strerror or e}")


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, suffix: str = "") -> str:
    """Call `write(tmp_path)` on a temporary sibling of `path`, then rename it to `path`.

    `suffix` keeps the extension on the temporary name for writers that look at it (PIL, numpy).
    On any failure the temporary file is removed and an OSError becomes a one-line InputError.
    """
    path = os.fspath(path)
    tmp = _tmp_name(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> str:
    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return atomic_write(path, write)


def write_text(path: str | os.PathLike, text: str) -> str:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any, *, indent: int | None = 1, sort_keys: bool = False,
               nan_to_null: bool = False) -> str:
    """JSON (numpy scalars and arrays as plain numbers and lists), written atomically: the one JSON
    writer of jax-inpaint. nan_to_null: NaN and +-inf written as null (else as NaN / Infinity)."""
    return write_text(path, json.dumps(jsonable(data, nan_to_null=nan_to_null), indent=indent, sort_keys=sort_keys,
                                       ensure_ascii=False, allow_nan=True) + "\n")


def jsonable(x, *, nan_to_null: bool = False):
    """numpy scalars / arrays and tuples -> plain Python, recursively; with nan_to_null, NaN and +-inf -> None."""
    import numpy as np

    if isinstance(x, dict):
        return {str(k): jsonable(v, nan_to_null=nan_to_null) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, nan_to_null=nan_to_null) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist(), nan_to_null=nan_to_null)
    if isinstance(x, np.generic):
        x = x.item()
    if nan_to_null and isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def safe_name(text: str, default: str = "item") -> str:
    """`text` as a file name: runs of characters other than letters, digits, '.', '_', '-' become '_', leading
    and trailing '.' / '_' are dropped; `default` when nothing is left."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or default


def check_writable(folder: str | os.PathLike, *, what: str = "--out") -> str:
    """Make sure `folder` exists (creating it and its parents) and a file can be written in it.

    Raises a one-line InputError naming the folder and the reason. Returns the absolute path.
    A folder created here is removed again if the check fails.
    """
    folder = os.path.abspath(os.fspath(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(f"{what} {folder}: exists and is not a folder")
    created = []
    try:
        p = folder
        while not os.path.exists(p):
            created.append(p)
            p = os.path.dirname(p)
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".write-check{TMP_MARK}", dir=folder)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as e:
        for p in created:  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(p)
        raise InputError(f"{what} {folder}: cannot write there ({e.strerror or e})") from None
    return folder


def remove_created(folder: str | os.PathLike) -> None:
    """Remove `folder` if it is empty (an output folder made for a run that wrote nothing)."""
    with contextlib.suppress(OSError):
        os.rmdir(os.fspath(folder))


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike, *, what: str = "--out") -> Iterator[str]:
    """`check_writable(folder)` before the work; if the work then fails (bad input found later, Ctrl-C),
    the folders created here are removed again when they are still empty, so a failed run leaves no
    trace. Yields the absolute path."""
    folder = os.path.abspath(os.fspath(folder))
    created = []
    p = folder
    while not os.path.exists(p) and os.path.dirname(p) != p:
        created.append(p)
        p = os.path.dirname(p)
    check_writable(folder, what=what)
    try:
        yield folder
    except BaseException:
        for p in created:  # deepest first; only while empty
            remove_created(p)
        raise


# ---------------------------------------------------------------------------------------------
# Several files written as one: a staging folder, moved into place when everything is written.

STAGING = ".jax-inpaint-staging"


def _staging_pid(name: str) -> int | None:
    try:
        return int(name.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return None


@contextlib.contextmanager
def staged(out: str | os.PathLike, *, stale: Callable[[set[str]], list[str]] | None = None) -> Iterator[str]:
    """Write a set of files into `out` all together or not at all.

    Yields a staging folder inside `out` (same file system: the final moves are renames); write every
    file there. When the block ends normally the files are moved into `out` (replacing files of the
    same name) and then `stale(new_names)` -> names of files in `out` to remove (the earlier run's own
    outputs this run did not rewrite) is applied. On any failure (a full disk, Ctrl-C) the staging
    folder is removed and `out` is left as it was; an OSError becomes a one-line InputError.
    Staging folders left by killed processes are removed on the way in.
    """
    import shutil

    out = os.path.abspath(os.fspath(out))
    try:
        os.makedirs(out, exist_ok=True)
        for name in os.listdir(out):
            pid = _staging_pid(name) if name.startswith(STAGING + TMP_MARK) else None
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        stage = os.path.join(out, f"{STAGING}{TMP_MARK}{os.getpid()}")
        shutil.rmtree(stage, ignore_errors=True)
        os.mkdir(stage)
    except OSError as e:
        raise InputError(f"cannot write to {out}: {e.strerror or e}") from None
    try:
        yield stage
        names = sorted(os.listdir(stage))
        old = [n for n in (stale(set(names)) if stale else []) if n not in names]
        for n in names:
            os.replace(os.path.join(stage, n), os.path.join(out, n))
        for n in old:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(out, n))
        os.rmdir(stage)
    except BaseException as e:
        shutil.rmtree(stage, ignore_errors=True)
        cause = e if isinstance(e, OSError) else e.__context__  # atomic_write's InputError keeps its OSError
        if isinstance(cause, OSError) and (e is cause or str(e).startswith("cannot write")):
            raise InputError(f"cannot write to {out}: {cause.strerror or cause}; nothing was written") from None
        raise


# ---------------------------------------------------------------------------------------------
# An exclusive lock on an output folder.

LOCK_FILE = ".jax-inpaint.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """An exclusive lock on a folder, held for a run: a lock file in it, locked with flock(2) and
    holding the holder's host, pid and start time (for the message a second run gets).

    The kernel drops the flock when its process dies, however it dies, so the lock of a killed run is
    free again at once (its file may stay; it is taken over), and two runs can never both hold it: a
    run that finds the file replaced after it locked it (the holder released it meanwhile) locks the new
    one instead. A live holder is an InputError naming it, or is waited for up to `wait` seconds."""

    def __init__(self, folder: str | os.PathLike, *, wait: float = 0.0, poll: float = 0.5, name: str = LOCK_FILE):
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, name)
        self.wait = wait
        self.poll = poll
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict | None:
        """What the lock file says of its holder (None when unreadable or not ours)."""
        try:
            with open(self.path) as f:
                info = json.loads(f.read(4096))
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _try_lock(self) -> bool:
        import fcntl

        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            raise InputError(f"{self.folder}: cannot create the lock file ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # released and removed by its holder after we opened it: lock the new file
            os.close(fd)
            return self._try_lock()
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return True

    def acquire(self) -> "FolderLock":
        deadline = time.monotonic() + self.wait
        while not self._try_lock():
            if time.monotonic() >= deadline:
                info = self.holder() or {}
                who = (f"process {info.get('pid')} on {info.get('host')} since {info.get('since')}"
                       if info.get("pid") else "another process")
                raise InputError(f"{self.folder} is in use by {who}: wait for it to finish (or use --wait)")
            time.sleep(self.poll)
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)  # while still locked: a waiting run then locks a new file
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
