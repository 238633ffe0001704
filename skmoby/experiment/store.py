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

import csv
import hashlib
import io
import json
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .config import ExperimentConfig, initial_labels
from .errors import OtherRunError, RunFolderError

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
#: The plot files :func:`~skmoby.experiment.plot_learning_curves` writes into a folder.
PLOT_FILES = ("learning_curve.png", "learning_curve.svg")
#: Every file a run writes into its folder (models aside).
RUN_FILES = ("config.json", "results.csv", "selections.json", "initial.json", *PLOT_FILES)
#: Settings that a run folder written before they existed holds at this value: left out
#: of the protocol's hash there, so that those folders keep theirs.
LATER_SETTINGS = {"initial_strategy": "random"}


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


def _read_json(path: Path) -> Any:
    """The JSON in ``path``; a file that is not JSON raises :class:`RunFolderError`."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path} is not valid JSON ({exc})") from None


def _distinct_indices(v: Any) -> bool:
    """Whether ``v`` is a JSON list of distinct image indices (true/false are not)."""
    return (
        isinstance(v, list)
        and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**63 for i in v)
        and len(set(v)) == len(v)
    )


def protocol_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that determine the results (all but :data:`PLACE_SETTINGS`, and
    those of :data:`LATER_SETTINGS` at their value)."""
    return {
        k: v
        for k, v in config.items()
        if k not in PLACE_SETTINGS and not (k in LATER_SETTINGS and LATER_SETTINGS[k] == v)
    }


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
        self.initial = self.out / "initial.json"

    # ------------------------------------------------------------------ config.json
    def check_kinds(self) -> None:
        """Refuse a folder where one of the run's files is not a regular file."""
        if self.out.exists() and not self.out.is_dir():
            raise RunFolderError(f"{self.out} is a file, not a folder")
        for path in (self.config, self.results, self.selections, self.initial):
            if path.exists() and not path.is_file():
                raise RunFolderError(
                    f"{path} is not a regular file (a folder?); the run "
                    f"writes its {path.name} there. Move it away or use "
                    "another folder"
                )

    def check_exists(self) -> None:
        """Refuse a folder that holds no run (no ``config.json``)."""
        self.check_kinds()
        if not self.config.exists():
            raise FileNotFoundError(f"{self.out} holds no experiment (no config.json)")

    def read_config_dict(self) -> dict[str, Any]:
        """The settings stored in ``config.json``, as a dict; errors name the file."""
        self.check_exists()
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
        """Write ``config.json``; settings of :data:`LATER_SETTINGS` at their value are
        left out, so that releases from before them still read the folder."""
        kept = {
            k: v for k, v in config.items() if k not in LATER_SETTINGS or LATER_SETTINGS[k] != v
        }
        atomic_write(self.config, json.dumps(kept, indent=2))

    # ------------------------------------------------------------------ initial.json
    def read_initial(self, cfg: ExperimentConfig, n_pool: int) -> dict[int, np.ndarray]:
        """The chosen first labelled sets stored so far, by trial (``{}`` for none);
        a file that another protocol wrote, or that holds sets the protocol could not
        have chosen, raises :class:`RunFolderError` naming it."""
        if not self.initial.exists():
            return {}
        d = _read_json(self.initial)
        if not isinstance(d, dict) or not isinstance(d.get("trials"), dict):
            raise RunFolderError(f"{self.initial} must hold an object with 'trials'")
        if d.get("config") != protocol_settings(cfg.to_dict()):
            raise RunFolderError(
                f"{self.initial} was written by a run of other settings; the file was "
                "changed or copied in after the run wrote it"
            )
        sets = {}
        for trial, chosen in d["trials"].items():
            ok = (
                trial.isdigit()
                and int(trial) < cfg.trials
                and _distinct_indices(chosen)
                and len(chosen) == cfg.initial
                and max(chosen, default=-1) < n_pool
            )
            if not ok:
                raise RunFolderError(
                    f"{self.initial}: trial {trial!r} does not hold {cfg.initial} distinct "
                    f"images of a pool of {n_pool}; the file was changed after the run "
                    "wrote it"
                )
            sets[int(trial)] = np.sort(np.asarray(chosen, dtype=np.int64))
        return sets

    def save_initial(self, sets: dict[int, np.ndarray], config: dict[str, Any]) -> None:
        """Write the chosen first labelled sets (all trials so far, atomically)."""
        trials = {str(t): [int(i) for i in idx] for t, idx in sorted(sets.items())}
        atomic_write(
            self.initial, json.dumps({"config": protocol_settings(config), "trials": trials})
        )

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
        data = _read_json(self.selections)
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

        for k, entry in cycles.items():
            ok = (
                isinstance(entry, dict)
                and _distinct_indices(entry.get("selected"))
                and (
                    entry.get("next_unlabeled") is None
                    or _distinct_indices(entry["next_unlabeled"])
                )
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
        if not self.results.exists():
            return empty_rows()
        lines = self._result_lines(repair=repair)
        parse = _RowParser(self.results, self.config, config, n_labelled)
        records, seen = [], {}
        for lineno, line in enumerate(lines[1:], start=2):
            rec = parse(lineno, line)
            k = (rec["method"], rec["trial"], rec["cycle"])
            if k in seen:
                raise parse.bad(
                    lineno,
                    line,
                    f"it repeats (method, trial, cycle) = {k} of line {seen[k]}; "
                    "delete one of the two lines",
                )
            seen[k] = lineno
            records.append(rec)
        self._check_no_gaps(seen)
        if not records:
            return empty_rows()
        return pd.DataFrame.from_records(records).astype(RESULT_DTYPES)

    def _result_lines(self, *, repair: bool) -> list[str]:
        """The lines of ``results.csv`` from its header on, a last line cut mid-write
        dropped (with a warning) when ``repair``, else refused."""
        path = self.results
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
            warnings.warn(msg, RuntimeWarning, stacklevel=5)
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
        return lines

    def _check_no_gaps(self, seen: dict[tuple[str, int, int], int]) -> None:
        """Refuse a (method, trial) whose saved cycles skip one: each needs the ones before."""
        done: dict[tuple[str, int], set[int]] = {}
        for m, t, c in seen:
            done.setdefault((m, t), set()).add(c)
        for (m, t), cs in done.items():
            missing = sorted(set(range(max(cs) + 1)) - cs)
            if missing:
                raise RunFolderError(
                    f"{self.results}, line {seen[(m, t, max(cs))]}: cycle {max(cs)} of ({m}, "
                    f"trial {t}) is there but cycle {missing[0]} is not; each cycle needs the "
                    "ones before it. Delete the later rows of that trial to recompute them"
                )

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


class _RowParser:
    """Parses and checks one line of ``results.csv`` against the run's settings."""

    def __init__(
        self, path: Path, config_path: Path, config: dict[str, Any], n_labelled: list[int]
    ) -> None:
        self.path, self.config_path, self.n_labelled = path, config_path, n_labelled
        self.want_hash = config_hash(config)
        self.methods, self.trials, self.cycles = (
            config["methods"],
            config["trials"],
            config["cycles"],
        )

    def bad(self, lineno: int, line: str, what: str) -> RunFolderError:
        return RunFolderError(f"{self.path}, line {lineno}: {what} (the line is {line!r})")

    def __call__(self, lineno: int, line: str) -> dict[str, Any]:
        fields = next(csv.reader(io.StringIO(line)), [])
        if len(fields) != len(CSV_COLUMNS):
            raise self.bad(lineno, line, f"expected {len(CSV_COLUMNS)} fields, got {len(fields)}")
        rec = dict(zip(CSV_COLUMNS, fields, strict=True))
        if rec["method"] not in self.methods:
            raise self.bad(
                lineno, line, f"method {rec['method']!r} is not one of the run's {self.methods}"
            )
        for name, limit in (("trial", self.trials), ("cycle", self.cycles), ("n_labelled", None)):
            try:
                rec[name] = int(rec[name])
            except ValueError:
                raise self.bad(lineno, line, f"{name} {rec[name]!r} is not an integer") from None
            if rec[name] < 0 or (limit is not None and rec[name] >= limit):
                raise self.bad(
                    lineno,
                    line,
                    f"{name} {rec[name]} is outside the run's range 0..{(limit or 1) - 1}",
                )
        for name in ("accuracy", "fit_seconds", "query_seconds"):
            try:
                rec[name] = float(rec[name])
            except ValueError:
                raise self.bad(lineno, line, f"{name} {rec[name]!r} is not a number") from None
            top = 1 if name == "accuracy" else math.inf
            if not math.isfinite(rec[name]) or not 0 <= rec[name] <= top:
                raise self.bad(lineno, line, f"{name} {rec[name]!r} is out of range")
        self._check_settings(lineno, line, rec)
        return {c: rec[c] for c in RESULT_DTYPES}

    def _check_settings(self, lineno: int, line: str, rec: dict[str, Any]) -> None:
        if rec["n_labelled"] != self.n_labelled[rec["cycle"]]:
            raise self.bad(
                lineno,
                line,
                f"n_labelled {rec['n_labelled']} does not match the configuration "
                f"({self.n_labelled[rec['cycle']]} in cycle {rec['cycle']})",
            )
        if rec["config_hash"] != self.want_hash:
            raise self.bad(
                lineno,
                line,
                f"the row was computed with other settings (config_hash "
                f"{rec['config_hash']}, {self.config_path} now hashes to {self.want_hash}); "
                "config.json was edited or rows from another run were added",
            )


class FolderState(NamedTuple):
    """What a checked run folder holds: its rows, selections and finished cycles."""

    rows: pd.DataFrame
    selections: dict[str, Any]
    done: set[tuple[str, int, int]]
    #: the chosen first labelled sets stored so far, by trial (``initial_strategy``)
    initial: dict[int, np.ndarray]


def read_config(store: RunFolder) -> ExperimentConfig:
    """The validated :class:`ExperimentConfig` of ``config.json``; errors name the file."""
    d = store.read_config_dict()
    try:
        cfg = ExperimentConfig.from_dict(d)
        cfg.validate()
    except (ValueError, TypeError) as exc:
        raise RunFolderError(f"{store.config}: {exc}") from None
    return cfg


def check_same_protocol(store: RunFolder, config: ExperimentConfig) -> ExperimentConfig | None:
    """Refuse a folder that holds another run, or results without their config.json;
    return the configuration the folder holds (None for a new folder)."""
    store.check_kinds()
    if not store.config.exists() and (store.results.exists() or store.selections.exists()):
        raise RunFolderError(
            f"{store.config} is missing, but {store.out} holds results of a "
            "run; restore config.json, or use another folder"
        )
    if not store.config.exists():
        return None
    stored = read_config(store)
    old, new = protocol_settings(stored.to_dict()), protocol_settings(config.to_dict())
    if old != new:
        raise OtherRunError(store.out, describe_changes(old, new))
    return stored


def checked_folder(cfg: ExperimentConfig, store: RunFolder, n_pool: int) -> FolderState:
    """The folder's rows, selections and finished cycles, once every check passed."""
    if not store.config.is_file():
        return FolderState(empty_rows(), {}, set(), {})
    rows, sel = store.load(cfg.to_dict(), cfg.n_labelled())
    done = {(r.method, int(r.trial), int(r.cycle)) for r in rows.itertuples()}
    first = store.read_initial(cfg, n_pool) if cfg.initial_strategy != "random" else {}
    _check_replay(cfg, n_pool, sel, done, store, first)
    return FolderState(rows, sel, done, first)


def _check_replay(
    cfg: ExperimentConfig,
    n_pool: int,
    sel: dict[str, Any],
    done: set[tuple[str, int, int]],
    store: RunFolder,
    first: dict[int, np.ndarray],
) -> None:
    """Refuse stored selections that a resumed run could not replay as they were made:
    indices outside the pool, images already labelled, or another count than the
    protocol picks (``budget`` per cycle, none after the last)."""
    for method, trial in sorted({(m, t) for m, t, _ in done}):
        if cfg.initial_strategy == "random":
            labeled = initial_labels(cfg, n_pool, trial)
        elif trial in first:
            labeled = first[trial]
        else:
            raise RunFolderError(
                f"{store.initial} lacks the first labelled set of trial {trial}, which "
                f"has results; the file was removed or changed after the run wrote it"
            )
        for cycle in range(cfg.cycles):
            if (method, trial, cycle) not in done:
                break
            k = key(method, trial, cycle)
            chosen = np.asarray(sel[k]["selected"], dtype=np.int64)
            nxt = sel[k].get("next_unlabeled")
            want = 0 if cycle == cfg.cycles - 1 else cfg.budget
            what = None
            if len(chosen) != want:
                what = f"holds {len(chosen)} selected images; the protocol picks {want}"
            elif chosen.size and chosen.max() >= n_pool:
                what = f"selects image {int(chosen.max())} of a pool of {n_pool}"
            elif np.isin(chosen, labeled).any():
                what = "selects images that were already labelled"
            elif nxt is not None and len(nxt) and max(nxt) >= n_pool:
                what = f"lists unlabelled image {max(nxt)} of a pool of {n_pool}"
            if what:
                raise RunFolderError(
                    f"{store.selections}: the entry {k!r} {what}; the "
                    "file was changed after the run wrote it"
                )
            labeled = np.union1d(labeled, chosen)
