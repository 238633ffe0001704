"""The run folder of the experiment runner: written by one process, checked when read.

A run folder holds three files:

``config.json``
    The :class:`~skmoby.experiment.ExperimentConfig` of the run.
``selections.json``
    ``{"config": <the protocol settings of the first row>, "cycles": {"method/trial/cycle":
    {"selected": [...], "next_unlabeled": [...] or null}}}``: what each finished cycle
    chose, so that a resumed run can replay it.
``results.csv``
    One row per finished (method, trial, cycle), ending with ``config_hash``, the hash of
    the protocol settings that produced the row.

Each file is replaced atomically (written to a temporary file in the folder, flushed to
disk, then renamed over the old one), selections before results, so a row never exists
without its selection. Reading checks everything a damaged or edited folder could get
wrong and either repairs what it can prove (a last row cut mid-write is dropped and
recomputed) or raises :class:`RunFolderError` naming the file and the line.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import socket
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

RESULT_DTYPES = {
    "method": str,
    "trial": int,
    "cycle": int,
    "n_labelled": int,
    "accuracy": float,
    "fit_seconds": float,
    "query_seconds": float,
}
#: Columns of ``results.csv``; the table returned to users has all but ``config_hash``.
CSV_COLUMNS = [*RESULT_DTYPES, "config_hash"]
#: Settings that say where and on what a run executes, not what it computes: they may
#: change between a run and its resumption.
PLACE_SETTINGS = ("device", "data_root", "download")


#: Name of the lock file a writing process holds in its run folder.
LOCK_NAME = ".skmoby.lock"


class RunFolderError(ValueError):
    """A run folder that cannot be used as it is; the message names the file and line.

    Examples
    --------
    >>> from skmoby.experiment import RunFolderError
    >>> issubclass(RunFolderError, ValueError)
    True
    """


class RunFolderLockedError(RunFolderError):
    """Another process is writing the run folder; the message names it.

    Examples
    --------
    >>> from skmoby.experiment import RunFolderError, RunFolderLockedError
    >>> issubclass(RunFolderLockedError, RunFolderError)
    True
    """


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


def _umask() -> int:
    # os.umask can only be read by setting it; restore it at once.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: str | bytes) -> None:
    """Replace ``path`` by ``data`` atomically, with the mode ``open()`` would give it.

    An ``OSError`` (a full disk, ...) names ``path``; the old file is left as it was.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600 files
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not exc.filename and exc.errno:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def protocol_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that determine the results (all but :data:`PLACE_SETTINGS`)."""
    return {k: v for k, v in config.items() if k not in PLACE_SETTINGS}


def config_hash(config: dict[str, Any]) -> str:
    """A short hash of the protocol settings, stored with every row they produced."""
    text = json.dumps(protocol_settings(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``"initial 30 -> 40, epochs 2 -> 3"`` for the settings that differ."""
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def key(method: str, trial: int, cycle: int) -> str:
    return f"{method}/{trial}/{cycle}"


def empty_rows() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in RESULT_DTYPES.items()})


class RunFolder:
    """Reads, checks and writes the three files of a run folder."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.results = self.out / "results.csv"
        self.selections = self.out / "selections.json"
        self.config = self.out / "config.json"

    # ------------------------------------------------------------------ config.json
    def check_kinds(self) -> None:
        """Refuse a folder where one of the run's files is not a regular file."""
        if self.out.exists() and not self.out.is_dir():
            raise RunFolderError(f"{self.out} is a file, not a folder")
        for path in (self.config, self.results, self.selections):
            if path.exists() and not path.is_file():
                raise RunFolderError(
                    f"{path} is not a regular file (a folder?); the run "
                    f"writes its {path.name} there. Move it away or use "
                    "another folder"
                )

    def read_config_dict(self) -> dict[str, Any]:
        """The settings stored in ``config.json``, as a dict; errors name the file."""
        self.check_kinds()
        if not self.config.exists():
            raise FileNotFoundError(f"{self.out} holds no experiment (no config.json)")
        text = self.config.read_text()
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RunFolderError(
                f"{self.config} is not valid JSON (line {exc.lineno}, "
                f"column {exc.colno}: {exc.msg})"
            ) from None
        if not isinstance(d, dict):
            raise RunFolderError(
                f"{self.config} must hold a JSON object of settings; got {type(d).__name__}"
            )
        return d

    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write(self.config, json.dumps(config, indent=2))

    # ------------------------------------------------------------------ loading
    def load(
        self, config: dict[str, Any], n_labelled: list[int], *, repair: bool = True
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Rows and selections, checked against ``config``.

        Parameters
        ----------
        config : dict
            The run's settings (``ExperimentConfig.to_dict()``).
        n_labelled : list of int
            Labelled images per cycle, to check each row's ``n_labelled``.
        repair : bool
            Drop a last row cut mid-write (with a warning) instead of refusing.

        Returns
        -------
        rows : DataFrame
            The finished cycles, without ``config_hash``.
        selections : dict
            ``"method/trial/cycle"`` -> selection entry.
        """
        self.check_kinds()
        sel, stored_config = self._load_selections()
        if stored_config is not None and (
            protocol_settings(stored_config) != protocol_settings(config)
        ):
            raise RunFolderError(
                f"{self.config} was edited after the run's first cycle was saved "
                f"({describe_changes(protocol_settings(stored_config), protocol_settings(config))}"
                f"); its rows were computed with the settings stored in {self.selections}. "
                "Restore config.json, or start the changed protocol in another folder"
            )
        rows = self._load_results(config, n_labelled, repair=repair)
        if len(rows) and not self.selections.exists():
            raise RunFolderError(
                f"{self.selections} is missing, but {self.results} has "
                f"{len(rows)} rows: the selections of the finished cycles "
                "are needed to resume them"
            )
        for r in rows.itertuples():
            k = key(r.method, r.trial, r.cycle)
            if k not in sel:
                raise RunFolderError(
                    f"{self.results} has a row for {k} but {self.selections} "
                    "has no selection for it: the files do not belong "
                    "together"
                )
        return rows, sel

    def _load_selections(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if not self.selections.exists():
            return {}, None
        try:
            data = json.loads(self.selections.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RunFolderError(f"{self.selections} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RunFolderError(f"{self.selections} must hold a JSON object")
        if set(data) != {"config", "cycles"}:
            # Without the stored settings, an edited config.json could not be told from
            # the one the rows were computed with: such a folder is refused, not guessed.
            raise RunFolderError(
                f"{self.selections} does not have the layout "
                '{"config": {...}, "cycles": {...}} that this version writes (a folder of '
                "a development version?); its rows cannot be checked against config.json. "
                "Start the run in a new folder"
            )
        cycles, stored = data["cycles"], data["config"]
        if not isinstance(cycles, dict) or not isinstance(stored, dict):
            raise RunFolderError(f"{self.selections} has an unexpected layout")

        def indices(v):  # distinct image indices (JSON true/false are not indices)
            return (
                isinstance(v, list)
                and all(
                    isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**63 for i in v
                )
                and len(set(v)) == len(v)
            )

        for k, entry in cycles.items():
            ok = (
                isinstance(entry, dict)
                and indices(entry.get("selected"))
                and (entry.get("next_unlabeled") is None or indices(entry["next_unlabeled"]))
            )
            if not ok:
                raise RunFolderError(
                    f"{self.selections}: the entry {k!r} is not "
                    '{"selected": [index, ...], "next_unlabeled": [index, ...] or null} '
                    "with distinct non-negative integer indices"
                )
        return cycles, stored

    def _load_results(
        self, config: dict[str, Any], n_labelled: list[int], *, repair: bool
    ) -> pd.DataFrame:
        path = self.results
        if not path.exists():
            return empty_rows()
        raw = path.read_bytes()
        if not raw:
            raise RunFolderError(
                f"{path} is empty (0 bytes); it should start with the header line "
                f"{','.join(CSV_COLUMNS)!r}. Delete it to recompute every cycle"
            )
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            raise RunFolderError(f"{path} is not a UTF-8 text file ({exc})") from None
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        elif len(lines) > 1:
            # Every row the runner writes ends with a newline: a last line without one
            # was cut while being written (by a copy, a full disk, ...). Drop it.
            cut = lines.pop()
            msg = (
                f"{path}, line {len(lines) + 1}: dropped a row cut mid-write ({cut!r}); "
                "its cycle will be recomputed"
            )
            if not repair:
                raise RunFolderError(msg.replace("dropped", "found") + " by `skmoby resume`")
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
        header = next(csv.reader([lines[0]])) if lines else []
        if header != CSV_COLUMNS:
            raise RunFolderError(
                f"{path}, line 1: the header must be "
                f"{','.join(CSV_COLUMNS)!r}; got {lines[0]!r}"
                + (
                    " (a folder of a development version, whose rows "
                    "cannot be checked against config.json: start the "
                    "run in a new folder)"
                    if header == list(RESULT_DTYPES)
                    else ""
                )
            )
        ncol = len(header)
        want_hash = config_hash(config)
        methods, trials, cycles = config["methods"], config["trials"], config["cycles"]
        records, seen = [], {}
        for lineno, line in enumerate(lines[1:], start=2):

            def bad(what, _lineno=lineno, _line=line):
                return RunFolderError(f"{path}, line {_lineno}: {what} (the line is {_line!r})")

            fields = next(csv.reader(io.StringIO(line)), [])
            if len(fields) != ncol:
                raise bad(f"expected {ncol} fields, got {len(fields)}")
            rec = dict(zip(header, fields, strict=True))
            if rec["method"] not in methods:
                raise bad(f"method {rec['method']!r} is not one of the run's {methods}")
            for name, limit in (("trial", trials), ("cycle", cycles), ("n_labelled", None)):
                try:
                    rec[name] = int(rec[name])
                except ValueError:
                    raise bad(f"{name} {rec[name]!r} is not an integer") from None
                if rec[name] < 0 or (limit is not None and rec[name] >= limit):
                    raise bad(
                        f"{name} {rec[name]} is outside the run's range 0..{(limit or 1) - 1}"
                    )
            for name in ("accuracy", "fit_seconds", "query_seconds"):
                try:
                    rec[name] = float(rec[name])
                except ValueError:
                    raise bad(f"{name} {rec[name]!r} is not a number") from None
                if (
                    not math.isfinite(rec[name])
                    or rec[name] < 0
                    or (name == "accuracy" and rec[name] > 1)
                ):
                    raise bad(f"{name} {rec[name]!r} is out of range")
            if rec["n_labelled"] != n_labelled[rec["cycle"]]:
                raise bad(
                    f"n_labelled {rec['n_labelled']} does not match the configuration "
                    f"({n_labelled[rec['cycle']]} in cycle {rec['cycle']})"
                )
            if rec["config_hash"] != want_hash:
                raise bad(
                    f"the row was computed with other settings (config_hash "
                    f"{rec['config_hash']}, {self.config} now hashes to {want_hash}); "
                    "config.json was edited or rows from another run were added"
                )
            k = (rec["method"], rec["trial"], rec["cycle"])
            if k in seen:
                raise bad(
                    f"it repeats (method, trial, cycle) = {k} of line {seen[k]}; "
                    "delete one of the two lines"
                )
            seen[k] = lineno
            records.append({c: rec[c] for c in RESULT_DTYPES})
        done: dict[tuple[str, int], set[int]] = {}
        for m, t, c in seen:
            done.setdefault((m, t), set()).add(c)
        for (m, t), cs in done.items():
            missing = sorted(set(range(max(cs) + 1)) - cs)
            if missing:
                raise RunFolderError(
                    f"{path}, line {seen[(m, t, max(cs))]}: cycle {max(cs)} of ({m}, trial "
                    f"{t}) is there but cycle {missing[0]} is not; each cycle needs the ones "
                    "before it. Delete the later rows of that trial to recompute them"
                )
        if not records:
            return empty_rows()
        return pd.DataFrame.from_records(records).astype(RESULT_DTYPES)

    # ------------------------------------------------------------------ writing
    def save(self, rows: pd.DataFrame, sel: dict[str, Any], config: dict[str, Any]) -> None:
        """Write selections, then results (sorted by method, trial and cycle)."""
        atomic_write(
            self.selections, json.dumps({"config": protocol_settings(config), "cycles": sel})
        )
        table = rows.sort_values(["method", "trial", "cycle"]).assign(
            config_hash=config_hash(config)
        )
        atomic_write(self.results, table[CSV_COLUMNS].to_csv(index=False))
