"""The ``skmoby`` command: the active-learning protocol, its demo, resume and plots."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _report(results, out: Path, title: str) -> None:
    from .experiment import plot_learning_curves, summarize

    table = summarize(results)
    print("\nTest accuracy (mean over trials) per cycle:")
    means = table.xs("mean", axis=1, level=1) if len(table) else table
    print((100 * means).round(2).to_string())
    files = plot_learning_curves(results, out, title=title)
    print(f"\nresults:   {out / 'results.csv'}")
    print(f"plot:      {', '.join(str(f) for f in files)}")
    print(f"resume:    skmoby resume {out}")


def _print_cycle(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)


def _demo(args: argparse.Namespace) -> int:
    from .experiment import PRESETS, ExperimentConfig, run_experiment

    cfg = ExperimentConfig(**{**PRESETS["demo"], "device": args.device, "seed": args.seed})
    out = Path(args.out) / "demo"
    if (out / "config.json").exists():
        import shutil

        shutil.rmtree(out)  # the demo always starts afresh
    print(f"MoBYv2AL against random selection on scikit-learn's digits: "
          f"{cfg.initial} initial labels, +{cfg.budget} per cycle, {cfg.cycles} cycles, "
          f"{cfg.trials} trials, CNN backbone, {cfg.epochs} epochs per cycle. MoBYv2AL "
          "also learns from the unlabelled pool, so its epochs take many more steps; "
          "random selection trains on the labels alone.")
    results = run_experiment(cfg, out, progress=not args.quiet, log=_print_cycle)
    _report(results, out, "skmoby demo: digits")
    return 0


def _config_from_args(args: argparse.Namespace):
    from .experiment import PRESETS, ExperimentConfig

    base = dict(PRESETS[args.preset]) if args.preset else {}
    if not args.preset and not args.dataset:
        raise SystemExit("skmoby run: error: give --preset or --dataset")
    overrides = {k: getattr(args, k) for k in (
        "dataset", "backbone", "initial", "budget", "cycles", "trials", "epochs",
        "batch_size", "lr", "unlabeled", "pool_subset", "seed", "device", "data_root",
        "download") if getattr(args, k) is not None}
    if args.methods:
        overrides["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    cfg = ExperimentConfig(**{**base, **overrides})
    try:
        cfg.validate()
    except ValueError as exc:
        raise SystemExit(f"skmoby run: error: {exc}") from None
    return cfg


def _run(args: argparse.Namespace) -> int:
    from .experiment import run_experiment

    cfg = _config_from_args(args)
    name = args.preset or cfg.dataset
    out = Path(args.out) / name if args.out == DEFAULT_OUT else Path(args.out)
    print(f"running {name}: {json.dumps(cfg.to_dict())}")
    try:
        results = run_experiment(cfg, out, progress=not args.quiet, log=_print_cycle)
    except (ValueError, FileNotFoundError) as exc:
        print(f"skmoby run: error: {exc}", file=sys.stderr)
        return 2
    _report(results, out, name)
    return 0


def _resume(args: argparse.Namespace) -> int:
    from .experiment import resume_experiment

    out = Path(args.dir)
    try:
        results = resume_experiment(out, progress=not args.quiet, log=_print_cycle)
    except (ValueError, FileNotFoundError) as exc:
        print(f"skmoby resume: error: {exc}", file=sys.stderr)
        return 2
    _report(results, out, out.name)
    return 0


def _plot(args: argparse.Namespace) -> int:
    import pandas as pd

    out = Path(args.dir)
    csv = out / "results.csv"
    if not csv.exists():
        print(f"skmoby plot: error: {csv} not found", file=sys.stderr)
        return 2
    _report(pd.read_csv(csv), out, out.name)
    return 0


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
    from .datasets import DATASETS
    from .experiment import PRESETS

    parser = argparse.ArgumentParser(
        prog="skmoby",
        description="Self-supervised active learning (MoBYv2AL): run the paper's protocol.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p):
        p.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = sub.add_parser(
        "demo", help="MoBYv2AL vs random selection on scikit-learn's digits (a few minutes)",
        description="Run a short active-learning comparison of MoBYv2AL and random "
        "selection on scikit-learn's digits (no download needed), print the per-cycle "
        "table and write results and a learning-curve plot.",
    )
    demo.add_argument("--out", default=DEFAULT_OUT,
                      help=f"results folder; the demo writes OUT/demo ({DEFAULT_OUT})")
    demo.add_argument("--seed", type=int, default=0, help="seed of the first trial (0)")
    demo.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda' (auto)")
    common(demo)
    demo.set_defaults(func=_demo)

    run = sub.add_parser(
        "run", help="run a preset or a custom protocol",
        description="Run the active-learning protocol. Start from a --preset (the paper's "
        f"protocols: {', '.join(PRESETS)}) and override any value, or describe a run "
        "from scratch with --dataset.",
    )
    run.add_argument("--preset", choices=sorted(PRESETS), help="a named protocol")
    run.add_argument("--dataset", choices=DATASETS)
    run.add_argument("--methods", help="comma-separated: mobyv2al,coreset,random,entropy")
    run.add_argument("--backbone", choices=["vgg16", "resnet18", "wrn28", "lenet5", "cnn",
                                            "mlp"])
    run.add_argument("--initial", type=_positive_int, help="initial labelled images")
    run.add_argument("--budget", type=_positive_int, help="images labelled per cycle")
    run.add_argument("--cycles", type=_positive_int)
    run.add_argument("--trials", type=_positive_int)
    run.add_argument("--epochs", type=_positive_int, help="training epochs per cycle")
    run.add_argument("--batch-size", type=_positive_int)
    run.add_argument("--lr", type=_positive_float)
    run.add_argument("--unlabeled", choices=["lowest_loss", "random", "all"],
                     help="unlabelled training data of mobyv2al (lowest_loss)")
    run.add_argument("--pool-subset", type=_positive_int,
                     help="random pool subset scanned per cycle (default: whole pool)")
    run.add_argument("--seed", type=int)
    run.add_argument("--device", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    run.add_argument("--data-root", help="folder of the dataset files")
    run.add_argument("--download", action="store_true", default=None,
                     help="download missing dataset files")
    run.add_argument("--out", default=DEFAULT_OUT,
                     help=f"results folder (default {DEFAULT_OUT}/PRESET_OR_DATASET)")
    common(run)
    run.set_defaults(func=_run)

    resume = sub.add_parser("resume", help="continue an interrupted run",
                            description="Continue the run stored in DIR from its last "
                            "finished cycle.")
    resume.add_argument("dir", help="results folder of the run")
    common(resume)
    resume.set_defaults(func=_resume)

    plot = sub.add_parser("plot", help="summary table and learning curves of a run",
                          description="Print the summary table of the run in DIR and "
                          "write DIR/learning_curve.png and .svg.")
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
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
