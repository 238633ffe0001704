"""The results of a run: the checked table of a run folder, its summary and its plot."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd

from .store import PLOT_FILES, RunFolder, atomic_write, read_config


def load_results(out: str | os.PathLike) -> pd.DataFrame:
    """The checked results table of a run folder, without changing the folder.

    A last row cut mid-write is left out with a warning; any other damage raises
    :class:`RunFolderError` naming the file and line.

    Parameters
    ----------
    out : path
        A folder written by :func:`run_experiment`.

    Returns
    -------
    pandas.DataFrame
        As returned by :func:`run_experiment`.

    Examples
    --------
    >>> import tempfile
    >>> from skmoby.experiment import ExperimentConfig, run_experiment
    >>> cfg = ExperimentConfig(methods=["random"], initial=20, budget=10, cycles=2,
    ...                        trials=1, epochs=1, device="cpu")
    >>> with tempfile.TemporaryDirectory() as out:
    ...     _ = run_experiment(cfg, out, progress=False)
    ...     table = load_results(out)
    >>> table["n_labelled"].tolist()
    [20, 30]
    """
    store = RunFolder(out)
    cfg = read_config(store)
    rows, _ = store.load(cfg.to_dict(), cfg.n_labelled())
    return rows.sort_values(["method", "trial", "cycle"]).reset_index(drop=True)


def _check_unique_rows(results: pd.DataFrame) -> None:
    if "trial" not in results or "accuracy" not in results:
        raise ValueError(
            "results must have the columns method, trial, cycle, n_labelled "
            f"and accuracy; got {list(results.columns)}"
        )
    dup = results.duplicated(["method", "trial", "cycle"], keep=False)
    if dup.any():
        first = results[dup].iloc[0]
        raise ValueError(
            f"results has {int(dup.sum())} rows that repeat a (method, trial, cycle), "
            f"e.g. ({first['method']}, {first['trial']}, {first['cycle']}); a repeated row "
            "is not another trial. Drop them first, e.g. "
            "results.drop_duplicates(['method', 'trial', 'cycle'])"
        )
    if results["accuracy"].isna().any():
        raise ValueError("results has rows without an accuracy")


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of test accuracy over trials, per method and cycle.

    Parameters
    ----------
    results : pandas.DataFrame
        The table returned by :func:`run_experiment`.

    Returns
    -------
    pandas.DataFrame
        Index ``(cycle, n_labelled)``, columns ``(method, mean|std|trials)``.

    Examples
    --------
    >>> import pandas as pd
    >>> res = pd.DataFrame({"method": ["a", "a"], "trial": [0, 1], "cycle": [0, 0],
    ...                     "n_labelled": [10, 10], "accuracy": [0.5, 0.7]})
    >>> float(summarize(res).loc[(0, 10), ("a", "mean")])
    0.6
    """
    _check_unique_rows(results)
    g = results.groupby(["method", "cycle"])
    table = g.agg(
        n_labelled=("n_labelled", "first"),
        mean=("accuracy", "mean"),
        std=("accuracy", "std"),
        trials=("trial", "nunique"),
    ).reset_index()
    return (
        table.pivot(
            index=["cycle", "n_labelled"], columns="method", values=["mean", "std", "trials"]
        )
        .swaplevel(axis=1)
        .sort_index(axis=1)
    )


def plot_learning_curves(
    results: pd.DataFrame, out: str | os.PathLike, title: str | None = None
) -> list[Path]:
    """Plot mean +- std test accuracy against the number of labels, one line per method.

    The legend gives the number of trials behind each line (a range while a run is
    incomplete); a single trial is drawn without a band.

    Parameters
    ----------
    results : pandas.DataFrame
        The table returned by :func:`run_experiment`.
    out : path
        Folder to write ``learning_curve.png`` and ``learning_curve.svg`` into.
    title : str, optional
        Plot title.

    Returns
    -------
    list of Path
        The files written.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> res = pd.DataFrame({"method": ["a", "a"], "trial": [0, 0], "cycle": [0, 1],
    ...                     "n_labelled": [10, 20], "accuracy": [0.5, 0.7]})
    >>> with tempfile.TemporaryDirectory() as out:
    ...     [f.name for f in plot_learning_curves(res, out)]
    ['learning_curve.png', 'learning_curve.svg']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check_unique_rows(results)
    out = Path(out)
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, df in results.groupby("method"):
        g = df.groupby("n_labelled")["accuracy"]
        mean, std = g.mean(), g.std().fillna(0.0)
        counts = sorted(set(df.groupby("n_labelled")["trial"].nunique()))
        n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        label = f"{method} ({n} trial{'s' if counts[-1] > 1 else ''})"
        ax.plot(mean.index, 100 * mean.values, marker="o", label=label)
        if counts[-1] > 1:  # one trial has no spread to show
            ax.fill_between(
                mean.index, 100 * (mean - std).values, 100 * (mean + std).values, alpha=0.2
            )
    ax.set_xlabel("number of labelled images")
    banded = results.groupby("method")["trial"].nunique().max() > 1
    ax.set_ylabel("test accuracy (%)" + (", mean ± 1 std over trials" if banded else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    files = [out / name for name in PLOT_FILES]
    try:
        for f in files:  # each replaced whole, like the run's other files
            buffer = io.BytesIO()
            fig.savefig(buffer, dpi=150, format=f.suffix[1:])
            atomic_write(f, buffer.getvalue())
    finally:
        plt.close(fig)
    return files
