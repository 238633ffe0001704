"""The lock that keeps a run folder to one writing process at a time."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import RunFolderError, RunFolderLockedError

#: Name of the lock file a writing process holds in its run folder.
LOCK_NAME = ".skmoby.lock"

# Locks this process holds: resolved folder -> [file descriptor, depth, owner], the owner
# being (pid, thread id). A POSIX record lock belongs to the process (another thread's
# lockf succeeds) and closing any descriptor of the file releases it, so the same thread
# nests on the held descriptor, and other threads and forked children are refused here.
_held: dict[str, list[Any]] = {}
_held_guard = threading.Lock()
# errno values of file systems that cannot lock (some FUSE and SMB mounts).
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return (
            f"process {info['pid']} on {info['host']} (`{info['command']}`, since {info['since']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _try_lock(fd: int, path: Path) -> bool:
    """Lock ``fd`` without waiting: True if this process now holds it."""
    import fcntl

    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno not in _NO_LOCKS:
            raise
    # No record locks on this file system: the pid in the file decides, and only for a
    # holder on this host (a process elsewhere cannot be checked).
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        info = {}
    pid = info.get("pid") if isinstance(info, dict) else None
    if not isinstance(pid, int) or isinstance(pid, bool):
        return True  # no holder named (an empty or foreign file)
    return info.get("host") == socket.gethostname() and not _pid_alive(pid)


@contextlib.contextmanager
def lock_folder(out: str | os.PathLike, *, create: bool = True) -> Iterator[None]:
    """Hold the run folder ``out`` for writing by this process, or refuse at once.

    The lock is a record lock (``fcntl.lockf``) on ``out/.skmoby.lock``, a file that
    also names the holder (pid, host, command, start time). The operating system
    releases a record lock when its process ends in any way, ``kill -9`` included, so a
    crashed run never leaves the folder locked: the next process takes the lock over.
    Record locks work on local file systems and on NFS (v3 with lockd, v4); where a file
    system cannot lock at all, the pid in the file is checked instead, which detects a
    dead holder on the same host only. Nested use in one process is allowed.

    Parameters
    ----------
    out : path
        The run folder; created if missing when ``create`` (and removed again on release
        if the lock file was all it held).
    create : bool, default=True
        Create a missing folder. Otherwise a missing folder raises ``FileNotFoundError``.

    Raises
    ------
    RunFolderLockedError
        When another process holds the folder; the message names it.

    Examples
    --------
    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     with lock_folder(out):
    ...         print(os.listdir(out))
    ['.skmoby.lock']
    """
    out = Path(out)
    made = False
    if not out.is_dir():
        if not create:
            raise FileNotFoundError(f"{out} is not a folder")
        if out.is_symlink():
            raise RunFolderError(
                f"{out} is a symbolic link to {os.readlink(out)!r}, which "
                "does not exist; create that folder or choose another"
            )
        if out.exists():
            raise RunFolderError(f"{out} is a file, not a folder; choose another output folder")
        out.mkdir(parents=True)
        made = True
    name = os.path.realpath(out)
    me = (os.getpid(), threading.get_ident())
    with _held_guard:
        held = _held.get(name)
        if held is not None and held[2] != me:
            who = (
                "another thread of this process"
                if held[2][0] == me[0]
                else f"process {held[2][0]}, of which this process is a copy"
            )
            raise RunFolderLockedError(
                f"{out} is being written by {who}; wait for it to end or use another folder"
            )
        if held is not None:
            held[1] += 1
        nested = held is not None
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held[name][1] -= 1
        return
    path = out / LOCK_NAME
    fd = _acquire(path)
    with _held_guard:
        _held[name] = [fd, 1, me]
    try:
        yield
    finally:
        with _held_guard:
            del _held[name]
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)  # releases the record lock
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty: nothing was written


def _acquire(path: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _try_lock(fd, path):
                raise RunFolderLockedError(
                    f"{path.parent} is being written by {_holder(path)}; wait for it to "
                    f"end or use another folder (if that process is gone, delete {path})"
                )
            # The previous holder may have unlinked the file between our open and our
            # lock: then we hold a lock on a file nobody else sees. Start again.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                info = dict(
                    pid=os.getpid(),
                    host=socket.gethostname(),
                    command=" ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])[
                        :300
                    ],
                    since=time.strftime("%Y-%m-%d %H:%M:%S"),
                )
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
