"""The ``skmoby`` command: the active-learning protocol, its demo, resume and plots."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import _commands
from ._commands import DEFAULT_OUT
from ._streams import ensure_std_streams
from .experiment import PRESETS

__all__ = ["build_parser", "main"]


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
    parser = argparse.ArgumentParser(
        prog="skmoby",
        description="Self-supervised active learning (MoBYv2AL): run the paper's protocol.",
    )
    parser.add_argument("--version", action="version", version=f"skmoby {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub)
    _add_run(sub)
    _add_resume(sub)
    _add_plot(sub)
    return parser


def _add_parallel_options(p: argparse.ArgumentParser) -> None:
    """Where the jobs of ``run`` and ``resume`` run."""
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


def _add_demo(sub) -> None:
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
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_commands.demo)


def _add_run(sub) -> None:
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
    _add_settings(run)
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
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_parallel_options(run)
    run.set_defaults(func=_commands.run)


def _add_settings(run: argparse.ArgumentParser) -> None:
    """The protocol's settings as flags of ``run`` (see ``ExperimentConfig``)."""
    from .datasets import DATASETS

    run.add_argument("--preset", choices=sorted(PRESETS), help="a named protocol")
    run.add_argument("--dataset", choices=DATASETS, help="dataset (or from --preset)")
    run.add_argument(
        "--methods",
        help="comma-separated, of: mobyv2al, coreset, random, entropy, "
        "mobyv2al-typiclust, mobyv2al-probcover, mobyv2al-adaptive, mobyv2al-margin",
    )
    run.add_argument("--backbone", choices=["vgg16", "resnet18", "wrn28", "lenet5", "cnn", "mlp"])
    run.add_argument("--initial", type=_positive_int, help="initial labelled images")
    run.add_argument(
        "--initial-strategy",
        choices=["random", "typiclust", "probcover"],
        help="how each trial picks its initial labels: at random (the paper; default), "
        "or typiclust/probcover on a learner trained on the unlabelled pool alone",
    )
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


def _add_resume(sub) -> None:
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
    resume.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_parallel_options(resume)
    resume.set_defaults(func=_commands.resume)


def _add_plot(sub) -> None:
    plot = sub.add_parser(
        "plot",
        help="summary table and learning curves of a run",
        description="Print the summary table of the run in DIR and "
        "write DIR/learning_curve.png and .svg.",
    )
    plot.add_argument("dir", help="results folder of the run")
    plot.set_defaults(func=_commands.plot)


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
