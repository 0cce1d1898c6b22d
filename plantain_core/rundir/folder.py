"""A run folder is untrusted once it leaves the machine that wrote it: the rules every
reader and writer of one follows.

- :func:`check_run_folder`: no symbolic links and no special files anywhere in it, so a
  read or a write can never be steered out of the folder (a ``figures`` link into your
  home folder, a ``captures/heads.npz`` link to a secret).
- :func:`locked`: one process writes at a time (``.plantain.lock``, through ``filelock``);
  a second gets an error naming the holder. Re-entrant within a process.
- :func:`staged`: the outputs of one report (statistics, CSVs, figures, card) are written
  into ``.staging/`` and moved into place as a whole; a kill half-way through is rolled
  forward (or back) by the next process that opens the folder, so a folder never mixes
  files of two settings.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shutil
import socket
import stat
import threading

from ..errors import PlantainError

LOCK = ".plantain.lock"
HOLDER = ".plantain.holder"
STAGING = ".staging"
COMMIT = "COMMIT"  # inside STAGING: the list of files to move; its presence means "roll forward"

_held: dict[pathlib.Path, list] = {}  # resolved folder -> [FileLock, depth]
_held_lock = threading.Lock()


class RunFolderError(PlantainError):
    """A run folder that plantain refuses to read or write."""


def check_run_folder(run_dir: str | os.PathLike) -> pathlib.Path:
    """``run_dir`` as a Path, after checking it holds only plain files and folders."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise RunFolderError(f"run folder not found: {run_dir}")
    for root, dirs, files in os.walk(run_dir, followlinks=False):
        for name in sorted(dirs) + sorted(files):
            path = pathlib.Path(root) / name
            mode = path.lstat().st_mode
            what = ("a symbolic link" if stat.S_ISLNK(mode) else
                    None if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "not a regular file")
            if what:
                raise RunFolderError(f"{run_dir}: {path.relative_to(run_dir)} is {what}; a run folder may hold only "
                                     "plain files and folders, so plantain refuses to read or write it")
    return run_dir


def inside(run_dir: pathlib.Path, *parts: str) -> pathlib.Path:
    """``run_dir/parts`` for names that come from a run folder's own files (layout names,
    file names): each must be one plain path component."""
    for part in parts:
        if not part or part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise RunFolderError(f"{run_dir}: {part!r} is not a plain file name; the run folder's files name "
                                 "something outside it")
    return run_dir.joinpath(*parts)


def _holder() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})


def _describe_holder(run_dir: pathlib.Path) -> str:
    try:
        h = json.loads((run_dir / HOLDER).read_text(encoding="utf-8"))
        return f"process {int(h['pid'])} on {str(h['host'])[:64]} since {str(h['since'])[:32]}"
    except Exception:
        return "another process"


@contextlib.contextmanager
def locked(run_dir: str | os.PathLike, create: bool = False):
    """Hold the run folder's lock for the block (re-entrant in this process); a folder
    another process holds is an error naming it. Finishes an interrupted commit first.
    ``create`` makes a missing folder (a new run); otherwise it is an error."""
    from filelock import FileLock, Timeout

    run_dir = pathlib.Path(run_dir)
    if create:
        run_dir.mkdir(parents=True, exist_ok=True)
    elif not run_dir.is_dir():
        raise RunFolderError(f"run folder not found: {run_dir}")
    key = run_dir.resolve()
    with _held_lock:
        entry = _held.get(key)
        if entry is None:
            entry = _held[key] = [_acquire(run_dir, FileLock, Timeout), 0]
            try:
                with disk_errors(run_dir, "cannot lock the run folder"):
                    (run_dir / HOLDER).write_text(_holder(), encoding="utf-8")
                recover(run_dir)
            except BaseException:  # a refused folder is not held: the next locked() recovers (or refuses) again
                _release(key, entry)
                raise
        entry[1] += 1
    try:
        yield run_dir
    finally:
        with _held_lock:
            entry[1] -= 1
            if entry[1] == 0:
                _release(key, entry)


def _acquire(run_dir: pathlib.Path, FileLock, Timeout):
    lock = FileLock(str(run_dir / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:  # an OSError too (TimeoutError): caught first
        raise RunFolderError(f"{run_dir} is in use by {_describe_holder(run_dir)}; wait for it to finish "
                             "(two processes must not write one run folder)") from None
    except OSError as exc:
        raise disk_error(run_dir, exc, "cannot lock the run folder") from exc
    return lock


def _release(key: pathlib.Path, entry: list) -> None:
    del _held[key]
    try:
        (key / HOLDER).unlink(missing_ok=True)
    except OSError:  # a holder file that cannot go (a folder in its place) must not keep the lock held
        pass
    entry[0].release()


@contextlib.contextmanager
def disk_errors(run_dir: pathlib.Path, doing: str = "cannot write the run folder"):
    """An OSError in the block (a read-only folder, a folder where a file goes) as one
    RunFolderError naming the folder, the reason and the path: the disk's fault, not plantain's."""
    try:
        yield
    except OSError as exc:
        raise disk_error(run_dir, exc, doing) from exc


def disk_error(run_dir, exc: OSError, doing: str = "cannot write the run folder") -> RunFolderError:
    return RunFolderError(f"{doing} {run_dir}: {exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}")


def check_writable(run_dir: pathlib.Path, names=()) -> None:
    """Before the work: refuse (one line) a run folder that cannot take the outputs
    ``names`` (paths relative to it, ``figures/x.png``): a folder where a file goes, a
    file where a folder goes, a ``.staging`` that is not a folder, a read-only folder."""
    staging = run_dir / STAGING
    if staging.exists() and not staging.is_dir():
        raise RunFolderError(f"{run_dir}: {STAGING} is not a folder; plantain stages its outputs there, so remove it")
    folders = {run_dir}
    for name in names:
        parts = pathlib.PurePosixPath(name).parts
        path = inside(run_dir, *parts)
        for i in range(1, len(parts)):
            parent = inside(run_dir, *parts[:i])
            if parent.exists() and not parent.is_dir():
                raise RunFolderError(f"{run_dir}: {'/'.join(parts[:i])} is a file where plantain writes the folder "
                                     "of its outputs; move it away")
            folders.add(parent)
        if path.exists() and not path.is_file():
            raise RunFolderError(f"{run_dir}: {name} is not a regular file, where plantain writes one; move it away")
    for folder in sorted(folders):
        if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
            raise RunFolderError(f"{run_dir}: {folder.relative_to(run_dir).as_posix()} is read-only; plantain "
                                 "cannot write its outputs there")


def settle(run_dir: pathlib.Path) -> None:
    """Before reading: finish a report a kill interrupted (needs the lock, briefly)."""
    if (run_dir / STAGING).exists():
        with locked(run_dir):
            pass


#: plantain's own bookkeeping files; a folder holding only these counts as empty.
OWN_FILES = (LOCK, HOLDER, STAGING)


def recover(run_dir: pathlib.Path) -> None:
    """Finish what a killed report left: move a committed staging folder into place, or
    drop an uncommitted one."""
    staging = run_dir / STAGING
    if not staging.is_dir() or staging.is_symlink():
        return
    commit = staging / COMMIT
    if commit.is_file():
        try:
            names = json.loads(commit.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            names = None
        if isinstance(names, list):
            _move(staging, run_dir, [n for n in names if isinstance(n, str)])
    shutil.rmtree(staging, ignore_errors=True)


def _move(staging: pathlib.Path, run_dir: pathlib.Path, names: list[str]) -> None:
    # every name is checked (inside the folder, a place a file can go) before the first
    # move, so a refused commit moves nothing
    check_writable(run_dir, names)
    with disk_errors(run_dir):
        for name in names:
            parts = pathlib.PurePosixPath(name).parts
            src = inside(staging, *parts)
            if not src.is_file():  # moved before the kill
                continue
            dst = inside(run_dir, *parts)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)


@contextlib.contextmanager
def staged(run_dir: pathlib.Path):
    """Write a report's outputs into the yielded folder; on success they replace the
    run folder's files together (files not written this time are left as they are)."""
    staging = run_dir / STAGING
    check_writable(run_dir)
    shutil.rmtree(staging, ignore_errors=True)
    with disk_errors(run_dir):
        staging.mkdir()
    try:
        with disk_errors(run_dir):
            yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    names = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    from .fsutil import atomic_write_text

    try:
        check_writable(run_dir, names)  # refused before the commit, so nothing is rolled forward
        with disk_errors(run_dir):
            atomic_write_text(staging / COMMIT, json.dumps(names))  # from here on, a kill rolls forward
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _move(staging, run_dir, names)
    shutil.rmtree(staging, ignore_errors=True)
