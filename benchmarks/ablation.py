"""Ablation of MoBYv2AL's design choices, paired against random selection.

Every variant is one run of the experiment runner (:func:`skmoby.experiment.run_experiment`)
in a folder of its own under ``--out``; all variants share the seeds, so trial ``t``
starts every variant from the same random labelled set, and the difference to random
selection is taken trial by trial (paired). Variants:

``random``
    The supervised learner (``lambda_c=0``) with random selection: the reference.
``coreset``
    The supervised learner with CoreSet (the paper's CoreSet baseline).
``mobyv2al``
    The method with skmoby's defaults (CoreSet on ``f_q`` of clean images).
``head-linear``, ``head-bn-relu``
    ``mobyv2al`` with the projector and predictor ending in a plain linear layer (MoBY,
    the authors' code) or in ``Linear -> BatchNorm1d -> ReLU`` (the paper's sentence).
``weak-features``
    ``mobyv2al`` with CoreSet on ``f_q`` of weak-augmented images (the authors' code).
``joint-random``
    The MoBYv2 learner with random selection: separates the gain of joint training
    from the gain of CoreSet selection.
``unlabeled-random``
    ``mobyv2al`` training on a random unlabelled subset instead of the lowest-loss one.
``mobyv2al-pool10x``, ``coreset-pool10x``
    ``mobyv2al`` and ``coreset`` scanning a random subset of ten times the budget per
    cycle, the ratio of the paper's SVHN/FashionMNIST protocol (10,000 for 1,000).
``mobyv2al-unit``, ``coreset-unit``
    ``mobyv2al`` and ``coreset`` with k-center greedy on L2-normalised features (cosine
    geometry) instead of the raw ``f_q``.
``mobyv2al-typiclust``, ``mobyv2al-probcover``
    The MoBYv2 learner selecting with :func:`~skmoby.typiclust` or
    :func:`~skmoby.probcover` on L2-normalised ``f_q`` (the low-budget strategies).
``typiclust-first``
    ``mobyv2al-typiclust`` whose first labelled set is chosen too, by TypiClust on a
    learner trained without labels (``initial_strategy="typiclust"``), instead of drawn
    at random; still paired with random by trial.
``entropy``
    The supervised learner with maximum-entropy selection (uncertainty alone).
``diverse-margin``, ``mobyv2al-margin``
    The supervised and the MoBYv2 learner selecting with :func:`~skmoby.diverse_margin`
    (the lowest-margin candidates, one per k-means cluster of their L2-normalised
    ``f_q``).
``margin-beta5``, ``margin-beta20``
    ``mobyv2al-margin`` with 5 or 20 candidates per pick instead of 10 (a narrower or a
    wider uncertainty filter).

``--split val`` holds out ``--n-val`` training images as the evaluation set and removes
them from the pool (to choose settings without the test set); ``--split test`` evaluates
on the dataset's test set. ``--imbalance KEEP`` cuts the pool's even classes to KEEP
images each, as the authors' imbalanced CIFAR-10 does. The runner's settings start from
``--preset`` and can be overridden. Results: ``OUT/<variant>/results.csv`` (resumable:
rerunning the same command continues), ``OUT/summary.csv``, ``OUT/ablation.rst``
(tables) and ``OUT/ablation.png``.

Usage (FashionMNIST files under DIR, flat or in torchvision's ``DIR/FashionMNIST/raw``)::

    flock /tmp/skmoby-heavy.lock uv run python benchmarks/ablation.py \\
        --data-root DIR --split val --trials 5 --out /tmp/ablation-val
    # tables from variants run in separate folders (e.g. two processes at once); every
    # folder must hold the same random reference, which is checked
    uv run python benchmarks/ablation.py --combine OUT1 OUT2 --out OUT
    # a smoke test on digits (seconds)
    uv run python benchmarks/ablation.py --dataset digits --preset demo --trials 1 \\
        --cycles 2 --epochs 1 --split val --n-val 300 --out /tmp/ablation-smoke
"""

from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path

import harness
import numpy as np
import pandas as pd
import torch

from skmoby import datasets
from skmoby.augment import WeakAugment
from skmoby.datasets import ImageDataset, load_dataset
from skmoby.experiment import PRESETS, ExperimentConfig, make_estimator, run_experiment
from skmoby.network import MoBYv2Network
from skmoby.query import diverse_margin, probcover, typiclust
from skmoby.query.strategies import coreset, random_sampling

REFERENCE = "random"
_DEFAULT_HEAD = inspect.signature(MoBYv2Network).parameters["projection_head"].default


def _joint_random(learner, X_pool, n_instances=1):
    """Random selection seeded like the runner seeds the learner of this cycle."""
    return random_sampling(
        learner, X_pool, n_instances, random_state=learner.estimator.random_state
    )


def _weak_views(X: np.ndarray, generator: torch.Generator, chunk: int = 4096) -> np.ndarray:
    """One weak view of every image, as floats in [0, 1] (what the classifier accepts)."""
    aug = WeakAugment()
    out = []
    for start in range(0, len(X), chunk):
        x = torch.as_tensor(X[start : start + chunk])
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        out.append(aug(x, generator).numpy())
    return np.concatenate(out) if out else np.zeros((0, *X.shape[1:]), np.float32)


def _weak_coreset(learner, X_pool, n_instances=1):
    """CoreSet on ``f_q`` of weak views of the pool and of the labelled centres."""
    g = torch.Generator().manual_seed(int(learner.estimator.random_state))
    X_lab = _weak_views(np.asarray(learner.X_training), g)
    return coreset(learner, _weak_views(np.asarray(X_pool), g), n_instances, X_labeled=X_lab)


class _UnitFeatures:
    """A view of a fitted estimator whose ``transform`` gives L2-normalised features."""

    def __init__(self, fitted):
        self.fitted = fitted

    def transform(self, X):
        F = np.asarray(self.fitted.transform(X), dtype=np.float64)
        return F / np.maximum(np.linalg.norm(F, axis=1, keepdims=True), 1e-12)


def _unit_coreset(learner, X_pool, n_instances=1):
    """CoreSet on L2-normalised features (k-center greedy in cosine geometry)."""
    return coreset(
        _UnitFeatures(learner.estimator),
        X_pool,
        n_instances,
        X_labeled=np.asarray(learner.X_training),
    )


def _joint_typiclust(learner, X_pool, n_instances=1):
    """TypiClust on the learner's L2-normalised ``f_q``, k-means seeded like the learner."""
    return typiclust(learner, X_pool, n_instances, random_state=learner.estimator.random_state)


def _joint_probcover(learner, X_pool, n_instances=1):
    """ProbCover on the learner's L2-normalised ``f_q``, delta chosen for 0.95 purity."""
    return probcover(learner, X_pool, n_instances, random_state=learner.estimator.random_state)


def _margin(learner, X_pool, n_instances=1):
    """Diverse margin sampling on the learner's probabilities and L2-normalised ``f_q``,
    k-means seeded like the learner."""
    return diverse_margin(learner, X_pool, n_instances, random_state=learner.estimator.random_state)


def _margin_beta5(learner, X_pool, n_instances=1):
    """Diverse margin sampling with half the default candidates (5 per pick)."""
    return diverse_margin(
        learner, X_pool, n_instances, beta=5, random_state=learner.estimator.random_state
    )


def _margin_beta20(learner, X_pool, n_instances=1):
    """Diverse margin sampling with twice the default candidates (20 per pick)."""
    return diverse_margin(
        learner, X_pool, n_instances, beta=20, random_state=learner.estimator.random_state
    )


def _pool10x(settings: dict) -> int:
    return 10 * settings["budget"]


#: name -> (runner method, estimator parameters, selection strategy or None, config
#: changes; a callable change is computed from the other settings)
VARIANTS: dict[str, tuple[str, dict, object, dict]] = {
    "random": ("random", {}, None, {}),
    "coreset": ("coreset", {}, None, {}),
    "mobyv2al": ("mobyv2al", {}, None, {}),
    "head-linear": ("mobyv2al", {"module__projection_head": "linear"}, None, {}),
    "head-bn-relu": ("mobyv2al", {"module__projection_head": "bn-relu"}, None, {}),
    "weak-features": ("mobyv2al", {}, _weak_coreset, {}),
    "joint-random": ("mobyv2al", {}, _joint_random, {}),
    "unlabeled-random": ("mobyv2al", {}, None, {"unlabeled": "random"}),
    "mobyv2al-pool10x": ("mobyv2al", {}, None, {"pool_subset": _pool10x}),
    "coreset-pool10x": ("coreset", {}, None, {"pool_subset": _pool10x}),
    "coreset-unit": ("coreset", {}, _unit_coreset, {}),
    "mobyv2al-unit": ("mobyv2al", {}, _unit_coreset, {}),
    "mobyv2al-typiclust": ("mobyv2al", {}, _joint_typiclust, {}),
    "mobyv2al-probcover": ("mobyv2al", {}, _joint_probcover, {}),
    "typiclust-first": ("mobyv2al", {}, _joint_typiclust, {"initial_strategy": "typiclust"}),
    "entropy": ("entropy", {}, None, {}),
    "diverse-margin": ("coreset", {}, _margin, {}),
    "mobyv2al-margin": ("mobyv2al", {}, _margin, {}),
    "margin-beta5": ("mobyv2al", {}, _margin_beta5, {}),
    "margin-beta20": ("mobyv2al", {}, _margin_beta20, {}),
}


def _with_params(config, method, dataset, random_state, *, device=None, params):
    """The runner's learner with the variant's estimator parameters."""
    est = make_estimator(config, method, dataset, random_state, device=device)
    return est.set_params(**params)


def _hooks(method: str, params: dict, strategy) -> dict:
    """The run_experiment hooks that build a variant's learners and select with its
    strategy (picklable, so that worker processes use them too)."""
    hooks = {}
    if params:
        hooks["make_estimator"] = functools.partial(_with_params, params=params)
    if strategy is not None:
        hooks["strategies"] = {method: strategy}
    return hooks


def _split(ds: ImageDataset, split: str, n_val: int, seed: int) -> ImageDataset:
    if split == "test":
        return ds
    if not 0 < n_val < len(ds.X_train):
        raise ValueError(f"--n-val must be in 1..{len(ds.X_train) - 1}; got {n_val}")
    perm = np.random.RandomState(seed).permutation(len(ds.X_train))
    val, pool = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return ImageDataset(
        f"{ds.name}-val",
        ds.X_train[pool],
        ds.y_train[pool],
        ds.X_train[val],
        ds.y_train[val],
        ds.classes,
        ds.normalize,
    )


def build_dataset(
    name: str, data_root: str | None, split: str, n_val: int, imbalance: int | None
) -> ImageDataset:
    """The evaluation split and pool of a run: what ``variant.json`` records rebuilds it."""
    ds = _split(load_dataset(name, data_root), split, n_val, seed=12345)
    return ds if imbalance is None else datasets.imbalance(ds, keep=imbalance)


def split_label(split: str, imbalance: int | None) -> str:
    return split if imbalance is None else f"{split}, even classes cut to {imbalance}"


def paired_table(results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per variant and cycle: mean/std accuracy and mean/std of the paired gap to random."""
    ref = results[REFERENCE].set_index(["trial", "cycle"])["accuracy"]
    rows = []
    for name, df in results.items():
        acc = df.set_index(["trial", "cycle"])["accuracy"]
        gap = (acc - ref).dropna()
        for cycle, a in acc.groupby(level="cycle"):
            g = gap[gap.index.get_level_values("cycle") == cycle]
            rows.append(
                dict(
                    variant=name,
                    cycle=int(cycle),
                    n_labelled=int(df.loc[df.cycle == cycle, "n_labelled"].iloc[0]),
                    trials=len(a),
                    mean=100 * a.mean(),
                    std=100 * a.std(),
                    gap_mean=100 * g.mean(),
                    gap_std=100 * g.std(),
                )
            )
    return pd.DataFrame(rows)


def gap_over_cycles(results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per variant: the gap to random averaged over cycles 1..last, per trial, then over
    trials (mean, std, standard error, and how many trials are ahead of random)."""
    ref = results[REFERENCE].set_index(["trial", "cycle"])["accuracy"]
    rows = []
    for name, df in results.items():
        acc = df.set_index(["trial", "cycle"])["accuracy"]
        gap = (acc - ref).dropna()
        gap = gap[gap.index.get_level_values("cycle") >= 1]
        per_trial = 100 * gap.groupby(level="trial").mean()
        n = len(per_trial)
        rows.append(
            dict(
                variant=name,
                trials=n,
                gap_mean=per_trial.mean(),
                gap_std=per_trial.std(),
                gap_sem=per_trial.std() / np.sqrt(n) if n > 1 else np.nan,
                trials_ahead=int((per_trial > 0).sum()),
            )
        )
    return pd.DataFrame(rows)


def _rst_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    rule = "  ".join("=" * w for w in widths)
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return "\n".join([rule, fmt(header), rule, *map(fmt, rows), rule]).rstrip() + "\n"


def to_rst(table: pd.DataFrame, overall: pd.DataFrame, variants: list[str]) -> str:
    """Two RST tables: accuracy per cycle, and the paired gap to random."""
    cycles = sorted(table.cycle.unique())
    labels = {c: table.loc[table.cycle == c, "n_labelled"].iloc[0] for c in cycles}
    header = ["variant", *[f"{labels[c]}" for c in cycles]]
    acc_rows, gap_rows = [], []
    for v in variants:
        t = table[table.variant == v].set_index("cycle")
        acc_rows.append(
            [
                v,
                *[
                    f"{t.loc[c, 'mean']:.2f} ± {t.loc[c, 'std']:.2f}" if c in t.index else ""
                    for c in cycles
                ],
            ]
        )
        if v == REFERENCE:
            continue
        o = overall.set_index("variant").loc[v]
        gap_rows.append(
            [
                v,
                *[
                    f"{t.loc[c, 'gap_mean']:+.2f} ± {t.loc[c, 'gap_std']:.2f}"
                    if c in t.index
                    else ""
                    for c in cycles
                ],
                f"{o.gap_mean:+.2f} ± {o.gap_sem:.2f}",
                f"{int(o.trials_ahead)}/{int(o.trials)}",
            ]
        )
    out = (
        "Accuracy (%) on the evaluation set (``--split``: validation or test), mean ± "
        "std over trials, by number of labels:\n\n"
    )
    out += _rst_table(header, acc_rows)
    if not gap_rows:
        return out
    out += (
        "\nPaired difference to random (points), mean ± std over trials; last columns: "
        "mean over cycles 1..last ± standard error, trials ahead of random:\n\n"
    )
    out += _rst_table([*header, "cycles 1..last", "ahead"], gap_rows)
    return out


def plot(table: pd.DataFrame, variants: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    for i, v in enumerate(variants):  # one colour per variant in both panels
        t = table[table.variant == v].sort_values("cycle")
        colour = f"C{i}" if len(variants) <= 10 else plt.cm.tab20(i % 20)
        style = dict(marker="o", capsize=3, color=colour)
        ax1.errorbar(t.n_labelled, t["mean"], yerr=t["std"], label=v, **style)
        if v != REFERENCE:
            ax2.errorbar(t.n_labelled, t.gap_mean, yerr=t.gap_std, **style)
    ax2.axhline(0, color="k", lw=0.8)
    ax1.set(xlabel="labelled images", ylabel="accuracy (%)", title="accuracy")
    ax2.set(xlabel="labelled images", ylabel="points", title="paired difference to random")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.legend(loc="lower center", ncol=min(len(variants), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0.05 * ((len(variants) + 4) // 5 + 1), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _complete_trials(df: pd.DataFrame, cycles: int) -> pd.DataFrame:
    counts = df.groupby("trial").cycle.count()
    return df[df.trial.isin(counts[counts == cycles].index)]


def combine(folders: list[Path], out: Path) -> str:
    """Tables and plot of the variants stored in several run folders, in ``out``.

    Each folder is the ``--out`` of an earlier run; all must hold the same ``random``
    results (same settings and split), else the differences would not be paired. Only
    trials with every cycle are used.
    """
    results: dict[str, pd.DataFrame] = {}
    reference = None
    settings = split = None
    key = ["trial", "cycle", "n_labelled", "accuracy"]
    for folder in folders:
        for variant in sorted(folder.glob("*/variant.json")):
            name = variant.parent.name
            spec = json.loads(variant.read_text())
            cfg = json.loads((variant.parent / "config.json").read_text())
            df = pd.read_csv(variant.parent / "results.csv")
            if name == REFERENCE:
                ref = df.sort_values(["trial", "cycle"])[key].reset_index(drop=True)
                if reference is not None and not ref.equals(reference):
                    raise SystemExit(
                        f"{variant.parent} holds other random results than "
                        "the first folder: the runs are not comparable"
                    )
                reference = ref
            elif name in results:
                raise SystemExit(f"variant {name!r} is in more than one folder")
            settings = settings or cfg
            split = split or split_label(spec["split"], spec.get("imbalance"))
            complete = _complete_trials(df, cfg["cycles"])
            if len(complete):
                results[name] = complete
    if reference is None:
        raise SystemExit(f"no folder under {[str(f) for f in folders]} holds {REFERENCE!r}")
    order = list(VARIANTS)
    results = {
        k: results[k]
        for k in sorted(
            results, key=lambda k: (k != REFERENCE, order.index(k) if k in order else len(order), k)
        )
    }
    out.mkdir(parents=True, exist_ok=True)
    return _report(results, out, settings, split)


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    p.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="RUN",
        help="only write the tables of the variants stored in these run folders",
    )
    p.add_argument("--dataset", default=None, help="default: the preset's")
    p.add_argument("--data-root", default=None)
    p.add_argument("--preset", default="fashionmnist-cpu", choices=sorted(PRESETS))
    p.add_argument(
        "--variants",
        default="random,coreset,head-linear,head-bn-relu,weak-features,joint-random",
        help=f"comma-separated, from {sorted(VARIANTS)}",
    )
    p.add_argument("--split", choices=("val", "test"), default="val")
    p.add_argument("--n-val", type=int, default=10000)
    p.add_argument(
        "--imbalance",
        type=int,
        default=None,
        metavar="KEEP",
        help="cut the pool's even classes to their first KEEP images (the "
        "authors' imbalanced CIFAR-10 keeps 500 of 5000); test/val stay whole",
    )
    p.add_argument("--out", required=True)
    harness.add_device(p, "cpu")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="trials of a variant run at once, each in a worker process (only "
        "for variants that change settings, not the estimator or strategy)",
    )
    for name, typ in (
        ("trials", int),
        ("cycles", int),
        ("initial", int),
        ("budget", int),
        ("epochs", int),
        ("batch_size", int),
        ("lr", float),
        ("pool_subset", int),
        ("backbone", str),
        ("unlabeled", str),
        ("seed", int),
    ):
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None)
    args = p.parse_args(argv)
    if args.combine:
        print(combine([Path(f) for f in args.combine], Path(args.out)))
        return

    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    patched = [v for v in names if VARIANTS[v][1] or VARIANTS[v][2] is not None]
    if args.jobs > 1 and patched:
        p.error(
            f"--jobs > 1 runs trials in worker processes, which do not see the "
            f"estimator or strategy of variants {patched}; run them with --jobs 1"
        )
    settings = dict(PRESETS[args.preset], device=args.device)
    for key in (
        "trials",
        "cycles",
        "initial",
        "budget",
        "epochs",
        "batch_size",
        "lr",
        "pool_subset",
        "backbone",
        "unlabeled",
        "seed",
        "dataset",
    ):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["data_root"] = args.data_root
    ds = build_dataset(settings["dataset"], args.data_root, args.split, args.n_val, args.imbalance)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{ds}; split={args.split}; variants {names}", flush=True)

    results = {}
    for name in names:
        method, params, strategy, changes = VARIANTS[name]
        changes = {k: v(settings) if callable(v) else v for k, v in changes.items()}
        cfg = ExperimentConfig.from_dict({**settings, **changes, "methods": [method]})
        folder = out / name
        folder.mkdir(exist_ok=True)
        if method == "mobyv2al":  # record the head in use, which may be a default
            params = {"module__projection_head": _DEFAULT_HEAD, **params}
        spec = {
            "variant": name,
            "split": args.split,
            "n_val": args.n_val,
            "imbalance": args.imbalance,
            "params": params,
            "strategy": getattr(strategy, "__name__", None),
            "changes": changes,
        }
        spec_file = folder / "variant.json"
        if spec_file.exists() and json.loads(spec_file.read_text()) != spec:
            raise SystemExit(f"{folder} holds another variant or split; use another --out")
        spec_file.write_text(json.dumps(spec, indent=2))
        with harness.Stopwatch() as took:
            res = run_experiment(
                cfg,
                folder,
                dataset=ds,
                progress=False,
                jobs=args.jobs,
                log=lambda s, n=name: print(f"[{n}] {s}", flush=True),
                **_hooks(method, params, strategy),
            )
        results[name] = res
        print(f"[{name}] {took.seconds:.0f} s", flush=True)
        # Tables after every variant, so a run stopped by a time limit leaves them.
        rst = _report(results, out, settings, split_label(args.split, args.imbalance))
    print(rst)


def _report(results: dict[str, pd.DataFrame], out: Path, settings: dict, split: str) -> str:
    names = list(results)
    table = paired_table(results)
    overall = gap_over_cycles(results)
    table.to_csv(out / "summary.csv", index=False)
    overall.to_csv(out / "gap_over_cycles.csv", index=False)
    rst = to_rst(table, overall, names)
    (out / "ablation.rst").write_text(rst)
    title = (
        f"{settings['dataset']} ({split}), {settings['backbone']}, "
        f"{settings['epochs']} epochs, {len(results[REFERENCE].trial.unique())} trials"
    )
    plot(table, names, out / "ablation.png", title)
    return rst


if __name__ == "__main__":
    main()
