"""What the ``skmoby`` command's subcommands do: run, resume, plot and the demo, with
their output and their errors in the words of the command line."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from ._callback_specs import CallbackSpecs
from .datasets import DatasetCorruptedError, DatasetNotFoundError
from .experiment import (
    PRESETS,
    ExperimentConfig,
    JobsFailedError,
    OptionError,
    OtherRunError,
    WorkerStartError,
)

DEFAULT_OUT = "skmoby-results"


def _trials_note(trials) -> str:
    counts = sorted({int(n) for n in trials.to_numpy().ravel() if n == n})
    if not counts:
        return "no finished cycle"
    if len(counts) > 1:
        return (
            f"mean over the trials finished so far: {counts[0]} to {counts[-1]} per "
            "cell, the run is incomplete"
        )
    return "a single trial" if counts[0] == 1 else f"mean over {counts[0]} trials"


def _report(results, out: Path, title: str, expected_rows: int) -> None:
    from .experiment import plot_learning_curves, summarize

    table = summarize(results)
    if len(table):
        trials = table.xs("trials", axis=1, level=1)
        print(f"\nTest accuracy (%) per cycle ({_trials_note(trials)}):")
        print((100 * table.xs("mean", axis=1, level=1)).round(2).to_string())
        if trials.nunique(dropna=True).max() > 1 or trials.isna().any().any():
            print("\nTrials per cycle:")
            print(trials.fillna(0).astype(int).to_string())
    else:
        print("\nNo finished cycle yet.")
    files = plot_learning_curves(results, out, title=title)
    print(f"\nresults:   {out / 'results.csv'}")
    print(f"plot:      {', '.join(str(f) for f in files)}")
    if len(results) < expected_rows:
        print(f"resume:    skmoby resume {out}")


def _rows_of(cfg: ExperimentConfig) -> int:
    """Rows of the finished run of ``cfg``."""
    return len(cfg.methods) * cfg.trials * cfg.cycles


_print_to_bar = [False]


def _print_cycle(line: str) -> None:
    if _print_to_bar[0]:
        from tqdm.auto import tqdm

        tqdm.write(line)
    else:
        print(line, flush=True)


def _prepare_output(quiet: bool) -> None:
    """Log lines go through tqdm when bars are shown, else straight to stdout.

    tqdm builds its write lock on first use; a Ctrl-C that lands inside that
    construction makes tqdm raise ``AttributeError`` instead of ``KeyboardInterrupt``,
    so the lock is built here, before any work starts.
    """
    _print_to_bar[0] = not quiet
    if not quiet:
        from tqdm.auto import tqdm

        tqdm.get_lock()


def _flag(option: str) -> str:
    """The command-line flag of a run option: ``jobs_per_gpu`` -> ``--jobs-per-gpu``."""
    return "--" + option.replace("_", "-")


def _message(exc: BaseException, out: Path | None = None) -> str:
    """The message of a library error, in the words of the command line where it has
    its own: options named by their flags, `skmoby resume` instead of a Python call."""
    if isinstance(exc, OptionError):
        return exc.worded(_flag)
    if isinstance(exc, OtherRunError):
        return (
            f"{exc.out} holds a run with another configuration ({exc.changes}); resume it "
            f"with `skmoby resume {exc.out}` or choose another --out"
        )
    if isinstance(exc, JobsFailedError):
        names = ", ".join(f"({m}, trial {t})" for m, t, _ in exc.failures)
        return (
            f"{len(exc.failures)} job(s) failed: {names}. The other jobs finished and their "
            f"cycles are saved; `skmoby resume {exc.out}` redoes only what is missing. "
            "First traceback:\n" + exc.failures[0][2]
        )
    if isinstance(exc, DatasetNotFoundError):
        return f"{exc.problem}or add --download (needs internet) to fetch them."
    if isinstance(exc, DatasetCorruptedError):
        them = "it" if len(exc.files) == 1 else "them"
        return f"{exc.problem} Replace {them}, or delete {them} and add --download."
    return str(exc)


def _check_device(device: str) -> None:
    """Refuse a ``--device`` this machine lacks, naming the flag (``ValueError``)."""
    from .devices import check_device, cuda_count

    try:
        check_device(device, name="--device")
    except ValueError:
        if device.startswith("cuda") and cuda_count() == 0:
            raise ValueError(
                f"--device {device} asks for a CUDA GPU, but torch finds no usable CUDA GPU "
                "on this machine; use --device auto or --device cpu"
            ) from None
        raise


def _check_backend(backend: str) -> None:
    """Refuse ``--backend ray`` where Ray is not installed (``ImportError``)."""
    from importlib.util import find_spec

    from .experiment.runners import RAY_INSTALL

    if backend == "ray" and find_spec("ray") is None:
        raise ImportError(f"--backend ray needs Ray, which is not installed: {RAY_INSTALL}")


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    callbacks = CallbackSpecs(args.callback) if args.callback else None
    return dict(
        jobs=args.jobs,
        jobs_per_gpu=args.jobs_per_gpu,
        backend=args.backend,
        ray_address=args.ray_address,
        callbacks=callbacks,
        save_models=args.save_models,
    )


def _usage(message: str) -> SystemExit:
    """Exit status 2 with ``message`` on stderr: bad input, as argparse reports it."""
    print(message, file=sys.stderr)
    return SystemExit(2)


def _execute(command: str, out: Path, start) -> int:
    """Run ``start()``, which returns the results and the rows of the finished run (or
    None); turn the runner's errors into messages naming flags."""
    try:
        outcome = start()
    except BrokenPipeError:
        raise  # the reader of stdout is gone: main ends quietly
    except KeyboardInterrupt:
        print(
            f"\nskmoby {command}: interrupted; the cycles in progress were not saved. "
            + _next_step(out),
            file=sys.stderr,
        )
        return 130
    except (JobsFailedError, WorkerStartError) as exc:
        print(f"skmoby {command}: error: {_message(exc, out)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, ImportError, ConnectionError) as exc:
        print(f"skmoby {command}: error: {_message(exc, out)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, ...
        print(f"skmoby {command}: error: {_os_message(exc, out)}", file=sys.stderr)
        return 1
    if outcome is None:  # --dry-run
        return 0
    return _report_or_error(command, out, *outcome)


def _report_or_error(command: str, out: Path, results, expected_rows: int) -> int:
    try:
        _report(results, out, out.name, expected_rows)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"skmoby {command}: error: {_os_message(exc, out)}", file=sys.stderr)
        return 1
    return 0


def _started(out: Path) -> bool:
    return (out / "config.json").is_file()


def _next_step(out: Path) -> str:
    """What continues the work: resume where a run was started, else the same command."""
    if _started(out):
        return f"`skmoby resume {out}` continues."
    return "Nothing was written; run the command again."


def _os_message(exc: OSError, out: Path) -> str:
    """One line for a file-system error: what failed, where, and what is safe."""
    what = exc.strerror or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    if not _started(out):
        return f"{what}{where}. Nothing was written; fix this or choose another --out"
    return (
        f"{what}{where}. Every file of the run folder is replaced whole, so the cycles "
        f"saved before are intact; once this is fixed, `skmoby resume {out}` continues "
        "(or choose another --out)"
    )


def _demo_jobs(cfg: ExperimentConfig) -> int:
    """The demo's jobs at once: one per usable CPU (each job is single-threaded on a
    small machine, and the table does not depend on it), one on a GPU."""
    from .devices import wants_gpu
    from .threads import available_cpus

    if wants_gpu(cfg.device):
        return 1
    return max(1, min(available_cpus(), len(cfg.methods) * cfg.trials))


def _demo_folder(base: Path, overwrite: bool) -> Path:
    """``base/demo``; with an earlier run there (and no ``overwrite``), the first free
    ``base/demo-N``, so that nothing an earlier run or a user wrote is touched."""
    folder, n = base / "demo", 1
    while not overwrite and folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        n += 1
        folder = base / f"demo-{n}"
    return folder


def _remove_run_files(folder: Path) -> None:
    """Remove what a run wrote into ``folder`` (the caller holds its lock)."""
    from .experiment.store import RUN_FILES

    for name in RUN_FILES:
        if (folder / name).is_file():
            (folder / name).unlink()


def _print_plan(state, resumed: bool = False) -> None:
    """Print what the run in ``state`` has left and what it costs on this machine."""
    from .experiment import plan_run

    print(f"measuring the time per training step on {state.config.device} ...", flush=True)
    plan = plan_run(state.config, state.dataset, state.folder.done, state.folder.initial)
    for line in plan.lines():
        print(line, flush=True)
    if resumed and not plan.fits:
        print("the table and plot below are rewritten from the saved rows")


def demo(args: argparse.Namespace) -> int:
    cfg = ExperimentConfig(**{**PRESETS["demo"], "device": args.device, "seed": args.seed})
    try:
        cfg.validate()
        _check_device(cfg.device)
    except ValueError as exc:
        raise _usage(f"skmoby demo: error: {exc}") from None
    base = _out_argument("demo", args.out)
    if base.exists() and not base.is_dir():
        raise _usage(
            f"skmoby demo: error: --out {base} is a file, not a folder; the demo "
            "writes a folder inside --out"
        )
    out = _demo_folder(base, args.overwrite)
    if out.name != "demo":
        print(
            f"{base / 'demo'} holds an earlier run (kept); this demo writes {out}. "
            f"`skmoby demo --overwrite` replaces the run files in {base / 'demo'} "
            "instead."
        )
    print(
        f"MoBYv2AL against random selection on scikit-learn's digits: "
        f"{cfg.initial} initial labels, +{cfg.budget} per cycle, {cfg.cycles} cycles, "
        f"{cfg.trials} trials, CNN backbone, {cfg.epochs} epochs per cycle. "
        "mobyv2al-adaptive selects with skmoby's default (TypiClust, then diverse margin "
        "sampling; `skmoby run --preset demo --methods mobyv2al,random` shows the "
        "paper's CoreSet). It also learns from the unlabelled pool, so its epochs take "
        "many more steps; random selection trains on the labels alone."
    )
    jobs = args.jobs if args.jobs is not None else _demo_jobs(cfg)

    def start():
        from .experiment import lock_folder, run_experiment

        with lock_folder(out):  # a run writing the folder is never overwritten
            if args.overwrite:
                _remove_run_files(out)
            results = run_experiment(
                cfg,
                out,
                progress=not args.quiet,
                log=_print_cycle,
                jobs=jobs,
                on_start=_start_output(args.quiet),
            )
        return results, _rows_of(cfg)

    return _execute("demo", out, start)


def _start_output(quiet: bool, resumed: bool = False):
    """The ``on_start`` of a run: print its plan, then set up the log lines."""

    def on_start(state) -> None:
        _print_plan(state, resumed)
        _prepare_output(quiet)

    return on_start


def _out_argument(command: str, text: str) -> Path:
    """``--out`` as a path; an empty value (an unset shell variable) is refused."""
    if not text.strip():
        raise _usage(
            f"skmoby {command}: error: --out must name a folder; got {text!r} "
            "(an unset shell variable?)"
        )
    return Path(text)


#: The settings ``skmoby run`` takes as flags of the same name.
_SETTING_FLAGS = (
    "dataset",
    "backbone",
    "initial",
    "initial_strategy",
    "budget",
    "cycles",
    "trials",
    "epochs",
    "batch_size",
    "lr",
    "unlabeled",
    "pool_subset",
    "seed",
    "device",
    "data_root",
    "download",
)


def _config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    base = dict(PRESETS[args.preset]) if args.preset else {}
    if not args.preset and not args.dataset:
        raise _usage("skmoby run: error: give --preset or --dataset")
    overrides = {k: getattr(args, k) for k in _SETTING_FLAGS if getattr(args, k) is not None}
    if args.methods:
        overrides["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    cfg = ExperimentConfig(**{**base, **overrides})
    try:
        cfg.validate()
    except ValueError as exc:
        raise _usage(f"skmoby run: error: {exc}") from None
    return cfg


def _options(command: str, args: argparse.Namespace) -> dict[str, Any]:
    """The run options of ``args``; a ``--callback`` that cannot be used ends here."""
    try:
        return _run_options(args)
    except ValueError as exc:
        raise _usage(f"skmoby {command}: error: {exc}") from None


def run(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)  # bad settings are named before PyTorch is imported
    name = args.preset or cfg.dataset
    out = _out_argument("run", args.out)
    if args.out == DEFAULT_OUT:
        out = out / name
    options = _options("run", args)
    print(f"running {name}: {json.dumps(cfg.to_dict())}", flush=True)

    def start():
        from .experiment import check_run, run_experiment

        _check_device(cfg.device)
        _check_backend(args.backend)
        if args.dry_run:  # nothing is written, so no lock is taken
            _print_plan(check_run(cfg, out))
            return None
        results = run_experiment(
            cfg,
            out,
            progress=not args.quiet,
            log=_print_cycle,
            on_start=_start_output(args.quiet),
            **options,
        )
        return results, _rows_of(cfg)

    return _execute("run", out, start)


def resume(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    options = _options("resume", args)
    seen = []

    def on_start(state) -> None:
        seen.append(_rows_of(state.config))
        _start_output(args.quiet, resumed=True)(state)

    def start():
        from .experiment import resume_experiment

        if args.device is not None:
            _check_device(args.device)
        _check_backend(args.backend)
        results = resume_experiment(
            out,
            progress=not args.quiet,
            log=_print_cycle,
            device=args.device,
            data_root=args.data_root,
            on_start=on_start,
            **options,
        )
        return results, seen[0]

    return _execute("resume", out, start)


def plot(args: argparse.Namespace) -> int:
    from .experiment import load_results
    from .experiment.store import RunFolder, read_config

    out = Path(args.dir)
    if not (out / "results.csv").exists():
        print(f"skmoby plot: error: {out / 'results.csv'} not found", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = load_results(out)
            expected = _rows_of(read_config(RunFolder(out)))
        except (ValueError, FileNotFoundError) as exc:
            print(f"skmoby plot: error: {_message(exc, out)}", file=sys.stderr)
            return 2
    for w in caught:
        print(
            f"skmoby plot: warning: {w.message}; `skmoby resume {out}` recomputes it",
            file=sys.stderr,
        )
    if results.empty:
        print(
            f"skmoby plot: error: {out / 'results.csv'} holds no finished cycle yet; "
            f"`skmoby resume {out}` runs them",
            file=sys.stderr,
        )
        return 2
    return _report_or_error("plot", out, results, expected)
