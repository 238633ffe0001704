"""The ``skmoby`` command: the active-learning protocol, its demo, resume and plots."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._streams import ensure_std_streams

__all__ = ["build_parser", "main"]

DEFAULT_OUT = "skmoby-results"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("skmoby")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


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


def _report(results, out: Path, title: str) -> None:
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
    if len(results) < _expected_rows(out):
        print(f"resume:    skmoby resume {out}")


def _expected_rows(out: Path) -> int:
    """Rows of the finished run in ``out`` (by its config.json; 0 if unreadable)."""
    try:
        cfg = json.loads((out / "config.json").read_text())
        return len(cfg["methods"]) * int(cfg["trials"]) * int(cfg["cycles"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


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


# Python spellings in library messages, and what a command-line user types instead.
_CLI_WORDS = [
    (r"or pass download=True", "or add --download"),
    (r"download=True", "--download"),
    (
        r"resume it with resume_experiment\(\) or use another folder",
        "resume it with `skmoby resume {out}` or choose another --out",
    ),
    (r"use resume_experiment\(\)", "use `skmoby resume {out}`"),
    (r"resuming (\S+) redoes", r"`skmoby resume \1` redoes"),
    (r"jobs_per_gpu \(", "--jobs-per-gpu ("),
    (r"jobs_per_gpu=", "--jobs-per-gpu "),
    (r"\bjobs=", "--jobs "),
    (r"ray_address", "--ray-address"),
    (r"device=('[^']*'|\S+)", r"--device \1"),
    (r"use 'auto' or 'cpu'", "use --device auto or --device cpu"),
    (r"backend 'ray'", "--backend ray"),
    (r"backend='ray'", "--backend ray"),
]


def _cli_message(exc: BaseException, out: Path | None = None) -> str:
    text = str(exc)
    for pattern, repl in _CLI_WORDS:
        text = re.sub(pattern, repl.replace("{out}", str(out)) if out else repl, text)
    return text


class CallbackSpecs:
    """Callbacks named on the command line as ``MODULE:NAME``, built for each estimator.

    ``NAME`` is a skorch callback instance, a callback class (instantiated without
    arguments) or a function ``f(method=..., trial=..., cycle=...)`` returning a
    callback or a list of them. Picklable, so worker processes rebuild them.

    Parameters
    ----------
    specs : list of str
        ``"MODULE:NAME"`` strings.

    Examples
    --------
    >>> make = CallbackSpecs(["skorch.callbacks:EpochTimer"])
    >>> [type(cb).__name__ for cb in make(method="random", trial=0, cycle=0)]
    ['EpochTimer']
    """

    def __init__(self, specs: list[str]) -> None:
        from skorch.callbacks import Callback

        self.specs = list(specs)
        for spec in self.specs:
            obj = self._resolve(spec)
            ok = isinstance(obj, Callback) or (
                issubclass(obj, Callback) if isinstance(obj, type) else callable(obj)
            )
            if not ok:
                raise ValueError(
                    f"--callback {spec}: not a skorch callback or a function; got {obj!r}"
                )

    @staticmethod
    def _resolve(spec: str) -> Any:
        module, sep, name = spec.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"--callback must be MODULE:NAME; got {spec!r}")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())  # like `python -m`, find modules of this folder
        try:
            obj = importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"--callback {spec}: cannot import {module!r} ({exc})") from None
        for part in name.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"--callback {spec}: {module!r} has no {name!r}")
            obj = getattr(obj, part)
        return obj

    def __call__(self, method: str, trial: int, cycle: int) -> list[Any]:
        from skorch.callbacks import Callback

        built = []
        for spec in self.specs:
            obj = self._resolve(spec)
            if isinstance(obj, type) and issubclass(obj, Callback):
                got = obj()
            elif isinstance(obj, Callback):
                got = obj
            elif callable(obj):
                got = obj(method=method, trial=trial, cycle=cycle)
            else:
                raise ValueError(f"--callback {spec}: not a skorch callback or a function")
            built.extend(got if isinstance(got, list | tuple) else [got])
        return built


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


def _execute(command: str, out: Path, start, title: str | None = None) -> int:
    """Run ``start()``; turn the runner's errors into messages naming flags."""
    from ._parallel import WorkerStartError
    from .experiment import JobsFailedError

    try:
        results = start()
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
        print(f"skmoby {command}: error: {_cli_message(exc, out)}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, ImportError, ConnectionError) as exc:
        print(f"skmoby {command}: error: {_cli_message(exc, out)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a read-only folder, ...
        print(f"skmoby {command}: error: {_os_message(exc, out)}", file=sys.stderr)
        return 1
    if results is None:  # --dry-run
        return 0
    try:
        _report(results, out, title or out.name)
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


def _demo_jobs(cfg) -> int:
    """The demo's jobs at once: one per usable CPU (each job is single-threaded on a
    small machine, and the table does not depend on it), one on a GPU."""
    from ._parallel import usable_cpus
    from .devices import wants_gpu

    if wants_gpu(cfg.device):
        return 1
    return max(1, min(usable_cpus(), len(cfg.methods) * cfg.trials))


#: The files a run writes into its folder; ``demo --overwrite`` replaces only these.
_RUN_FILES = (
    "config.json",
    "results.csv",
    "selections.json",
    "learning_curve.png",
    "learning_curve.svg",
)


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
    for name in _RUN_FILES:
        if (folder / name).is_file():
            (folder / name).unlink()


def _demo(args: argparse.Namespace) -> int:
    from .devices import check_device
    from .experiment import PRESETS, ExperimentConfig, run_experiment

    cfg = ExperimentConfig(**{**PRESETS["demo"], "device": args.device, "seed": args.seed})
    try:
        cfg.validate()
        check_device(cfg.device)
    except ValueError as exc:
        raise _usage(f"skmoby demo: error: {_cli_message(exc)}") from None
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
        f"{cfg.trials} trials, CNN backbone, {cfg.epochs} epochs per cycle. MoBYv2AL "
        "also learns from the unlabelled pool, so its epochs take many more steps; "
        "random selection trains on the labels alone."
    )
    jobs = args.jobs if args.jobs is not None else _demo_jobs(cfg)

    def start():
        from ._runstore import lock_folder

        with lock_folder(out):  # a run writing the folder is never overwritten
            if args.overwrite:
                _remove_run_files(out)
            ds, _ = _plan(cfg, out)
            _prepare_output(args.quiet)
            return run_experiment(
                cfg, out, dataset=ds, progress=not args.quiet, log=_print_cycle, jobs=jobs
            )

    return _execute("demo", out, start)


def _out_argument(command: str, text: str) -> Path:
    """``--out`` as a path; an empty value (an unset shell variable) is refused."""
    if not text.strip():
        raise _usage(
            f"skmoby {command}: error: --out must name a folder; got {text!r} "
            "(an unset shell variable?)"
        )
    return Path(text)


def _config_from_args(args: argparse.Namespace):
    from ._config import PRESETS, ExperimentConfig

    base = dict(PRESETS[args.preset]) if args.preset else {}
    if not args.preset and not args.dataset:
        raise _usage("skmoby run: error: give --preset or --dataset")
    overrides = {
        k: getattr(args, k)
        for k in (
            "dataset",
            "backbone",
            "initial",
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
        if getattr(args, k) is not None
    }
    if args.methods:
        overrides["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    cfg = ExperimentConfig(**{**base, **overrides})
    try:
        cfg.validate()
    except ValueError as exc:
        raise _usage(f"skmoby run: error: {exc}") from None
    return cfg


def _plan(cfg, out: Path, ds=None):
    """Check the folder, load the data (unless given), print what the run has left and
    its cost; return the dataset, to be handed to the runner."""
    from ._plan import plan_run
    from ._runstore import RunFolder
    from .devices import check_device
    from .experiment import (
        _check_same_protocol,
        _checked_dataset,
        _checked_folder,
    )

    check_device(cfg.device)
    store = RunFolder(out)
    _check_same_protocol(store, cfg)  # a folder of another run: refused before the probe
    ds = _checked_dataset(cfg, ds)
    done = _checked_folder(cfg, store, ds)[2] if store.config.is_file() else ()
    print(f"measuring the time per training step on {cfg.device} ...", flush=True)
    plan = plan_run(cfg, ds, done)
    for line in plan.lines():
        print(line, flush=True)
    return ds, plan


def _run(args: argparse.Namespace) -> int:
    cfg = _config_from_args(args)  # bad settings are named before PyTorch is imported
    name = args.preset or cfg.dataset
    out = _out_argument("run", args.out)
    if args.out == DEFAULT_OUT:
        out = out / name
    try:
        options = _run_options(args)
    except ValueError as exc:
        raise _usage(f"skmoby run: error: {exc}") from None
    print(f"running {name}: {json.dumps(cfg.to_dict())}", flush=True)

    def start():
        from ._runstore import lock_folder
        from .experiment import run_experiment

        if args.dry_run:
            _plan(cfg, out)
            return None
        with lock_folder(out):  # refused at once while another process writes it
            ds, _ = _plan(cfg, out)
            _prepare_output(args.quiet)
            return run_experiment(
                cfg, out, dataset=ds, progress=not args.quiet, log=_print_cycle, **options
            )

    return _execute("run", out, start)


def _resume(args: argparse.Namespace) -> int:
    import dataclasses

    from .experiment import _read_config, resume_experiment

    out = Path(args.dir)
    try:
        options = _run_options(args)
    except ValueError as exc:
        raise _usage(f"skmoby resume: error: {exc}") from None

    def start():
        from ._runstore import RunFolder, lock_folder

        _read_config(RunFolder(out))  # a folder without a run is named first
        with lock_folder(out, create=False):
            return _resume_locked()

    def _resume_locked():
        from ._runstore import RunFolder

        cfg = _read_config(RunFolder(out))
        changes = {
            k: v
            for k, v in (("device", args.device), ("data_root", args.data_root))
            if v is not None
        }
        cfg = dataclasses.replace(cfg, **changes)
        cfg.validate()
        ds, plan = _plan(cfg, out)
        if not plan.fits:
            print("the table and plot below are rewritten from the saved rows")
        _prepare_output(args.quiet)
        return resume_experiment(
            out,
            dataset=ds,
            progress=not args.quiet,
            log=_print_cycle,
            device=args.device,
            data_root=args.data_root,
            **options,
        )

    return _execute("resume", out, start)


def _plot(args: argparse.Namespace) -> int:
    from .experiment import load_results

    out = Path(args.dir)
    if not (out / "results.csv").exists():
        print(f"skmoby plot: error: {out / 'results.csv'} not found", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = load_results(out)
        except (ValueError, FileNotFoundError) as exc:
            print(f"skmoby plot: error: {_cli_message(exc, out)}", file=sys.stderr)
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
    try:
        _report(results, out, out.name)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"skmoby plot: error: {_os_message(exc, out)}", file=sys.stderr)
        return 1
    return 0


def _presets_epilog(presets: dict[str, dict[str, Any]]) -> str:
    lines = ["presets (labels: initial + budget per cycle):"]
    for name, p in presets.items():
        lines.append(
            f"  {name:<19} {p['dataset']}, {p['backbone']}, {p['initial']} + {p['budget']}"
            f" x {p['cycles'] - 1}, {p['trials']} trials, {p['epochs']} epochs, batch "
            f"{p['batch_size']}, lr {p['lr']}, methods {','.join(p['methods'])}"
            + (f", pool subset {p['pool_subset']}" if p.get("pool_subset") else "")
            + (f", unlabeled {p['unlabeled']}" if p.get("unlabeled") else "")
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``skmoby`` command.

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> args = build_parser().parse_args(["run", "--preset", "fashionmnist", "--trials", "1"])
    >>> args.command, args.preset, args.trials
    ('run', 'fashionmnist', 1)
    """
    from ._config import PRESETS
    from .datasets import DATASETS

    parser = argparse.ArgumentParser(
        prog="skmoby",
        description="Self-supervised active learning (MoBYv2AL): run the paper's protocol.",
    )
    parser.add_argument("--version", action="version", version=f"skmoby {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p):
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    def parallel(p):
        g = p.add_argument_group(
            "where the jobs run (see the docs: Running on several GPUs or a cluster)"
        )
        g.add_argument(
            "--jobs",
            type=_positive_int,
            default=1,
            help="(method, trial) jobs run at once, in worker processes; GPUs "
            "are assigned round-robin, CPU threads split (1)",
        )
        g.add_argument(
            "--jobs-per-gpu",
            type=_positive_int,
            help="jobs sharing one GPU; without --jobs, runs this many on every GPU",
        )
        g.add_argument(
            "--backend",
            choices=["local", "ray"],
            default="local",
            help="'ray' runs each job as a Ray task (pip install 'skmoby[ray]')",
        )
        g.add_argument(
            "--ray-address",
            help="join this Ray cluster ('auto', HOST:6379, ray://HOST:10001) "
            "instead of starting a local Ray",
        )
        g.add_argument(
            "--callback",
            action="append",
            metavar="MODULE:NAME",
            help="a skorch callback (instance, class or function f(method, trial,"
            " cycle)) added to every estimator; repeatable",
        )
        g.add_argument(
            "--save-models",
            action="store_true",
            help="write each cycle's fitted estimator to DIR/models/",
        )

    demo = sub.add_parser(
        "demo",
        help="MoBYv2AL vs random selection on scikit-learn's digits (a few minutes)",
        description="Run a short active-learning comparison of MoBYv2AL and random "
        "selection on scikit-learn's digits (no download needed), print the per-cycle "
        "table and write results and a learning-curve plot.",
    )
    demo.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"results folder; the demo writes OUT/demo, or OUT/demo-N when "
        f"OUT/demo holds an earlier run ({DEFAULT_OUT})",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the first trial (0)")
    demo.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (auto)")
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="reuse OUT/demo, replacing the run files an earlier run wrote "
        "there (other files are kept); without it an earlier run is kept "
        "and the demo writes OUT/demo-2, demo-3, ...",
    )
    demo.add_argument(
        "--jobs",
        type=_positive_int,
        help="jobs run at once in worker processes (default: one per CPU "
        "on the CPU, 1 on a GPU; the table is the same)",
    )
    common(demo)
    demo.set_defaults(func=_demo)

    run = sub.add_parser(
        "run",
        help="run a preset or a custom protocol",
        description="Run the active-learning protocol. Start from a --preset (the paper's "
        f"protocols: {', '.join(PRESETS)}) and override any value, or describe a run "
        "from scratch with --dataset (unset values then take the defaults of "
        "skmoby.experiment.ExperimentConfig). Before training, the command prints the "
        "run's training steps and an estimate of its time measured on this machine.",
        epilog=_presets_epilog(PRESETS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--preset", choices=sorted(PRESETS), help="a named protocol")
    run.add_argument("--dataset", choices=DATASETS, help="dataset (or from --preset)")
    run.add_argument(
        "--methods",
        help="comma-separated, of: mobyv2al, coreset, random, entropy, "
        "mobyv2al-typiclust, mobyv2al-probcover",
    )
    run.add_argument("--backbone", choices=["vgg16", "resnet18", "wrn28", "lenet5", "cnn", "mlp"])
    run.add_argument("--initial", type=_positive_int, help="initial labelled images")
    run.add_argument("--budget", type=_positive_int, help="images labelled per cycle")
    run.add_argument(
        "--cycles",
        type=_positive_int,
        help="train/evaluate cycles; the first starts from --initial labels "
        "and each later one adds --budget",
    )
    run.add_argument(
        "--trials", type=_positive_int, help="repetitions with seeds SEED, SEED+1, ..."
    )
    run.add_argument("--epochs", type=_positive_int, help="training epochs per cycle")
    run.add_argument("--batch-size", type=_positive_int, help="images per SGD step")
    run.add_argument("--lr", type=_positive_float, help="SGD learning rate")
    run.add_argument(
        "--unlabeled",
        choices=["lowest_loss", "random", "all"],
        help="unlabelled training data of mobyv2al (lowest_loss)",
    )
    run.add_argument(
        "--pool-subset",
        type=_positive_int,
        help="random pool subset scanned per cycle (default: whole pool)",
    )
    run.add_argument("--seed", type=int, help="seed of the first trial")
    run.add_argument("--device", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    run.add_argument(
        "--data-root",
        help="folder of the dataset files (FashionMNIST: the "
        "four .gz files, flat or in FashionMNIST/raw/)",
    )
    run.add_argument(
        "--download", action="store_true", default=None, help="download missing dataset files"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (fits, training steps, the time per step measured "
        "here and the estimated total) and stop; nothing is written",
    )
    run.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"results folder (default {DEFAULT_OUT}/PRESET_OR_DATASET)",
    )
    common(run)
    parallel(run)
    run.set_defaults(func=_run)

    resume = sub.add_parser(
        "resume",
        help="continue an interrupted run",
        description="Continue the run stored in DIR from its last "
        "finished cycles. The folder is checked first: an edited "
        "config.json or a damaged results.csv is refused, naming the "
        "file and line; a last row cut mid-write is recomputed. "
        "--jobs and --backend may differ from the first run's.",
    )
    resume.add_argument("dir", help="results folder of the run")
    resume.add_argument("--device", help="run on this device instead of config.json's")
    resume.add_argument("--data-root", help="read the dataset from this folder instead")
    common(resume)
    parallel(resume)
    resume.set_defaults(func=_resume)

    plot = sub.add_parser(
        "plot",
        help="summary table and learning curves of a run",
        description="Print the summary table of the run in DIR and "
        "write DIR/learning_curve.png and .svg.",
    )
    plot.add_argument("dir", help="results folder of the run")
    plot.set_defaults(func=_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``skmoby`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.

    Examples
    --------
    >>> import contextlib, io, tempfile
    >>> with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
    ...     status = main(["run", "--dataset", "digits", "--methods", "random",
    ...                    "--initial", "20", "--budget", "10", "--cycles", "2",
    ...                    "--trials", "1", "--epochs", "1", "--device", "cpu",
    ...                    "--quiet", "--out", out])
    >>> status
    0
    """
    ensure_std_streams()
    command = "skmoby"
    try:
        args = build_parser().parse_args(argv)
        command = f"skmoby {args.command}"
        return int(args.func(args))
    except KeyboardInterrupt:
        # Ctrl-C outside a run (while starting, loading data, importing PyTorch): no
        # traceback, the shell's status for an interrupt.
        print(f"\n{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`skmoby plot DIR | head -1`): say nothing more.
        # stdout is pointed at /dev/null so that the flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a program the pipe ended would report


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
