"""What each variant of an ablation run picked: class balance and how atypical the picks are.

Reads the run folder written by ``benchmarks/ablation.py`` (``OUT/<variant>/selections.json``)
and rebuilds the same pool (same dataset, split and imbalance, read from
``OUT/<variant>/variant.json``). For the images each variant selected in cycles
``0..last-1`` it reports, averaged over trials and cycles:

``largest``, ``smallest``
    The largest and smallest class share of one cycle's picks (a tenth each when balanced).
``kl_uniform``
    The Kullback-Leibler divergence (nats) of that class distribution from uniform.
``knn_dist``
    The mean distance from a pick to its ``k`` nearest neighbours in the whole pool, in a
    fixed space that no variant trained (the first 50 principal components of the pixels),
    relative to the same figure for random picks: above 1 means the picks lie where the
    data is sparse (atypical images).
``knn_disagree``
    The share of picks whose label differs from the majority label of their ``k`` nearest
    pool neighbours (ambiguous or atypical images), in the same space.
``rare_classes``
    Only for a run with ``--imbalance``: the share of picks from the classes that were cut
    (the even classes), against their share of the pool in ``pool_rare``.

The share of each class in all of a variant's picks is printed too. Results:
``OUT/selection_stats.csv`` and ``OUT/class_shares.csv``.

Usage::

    uv run python benchmarks/selection_stats.py --data-root DIR --out OUT [--k 10]
"""

from __future__ import annotations

import json
from pathlib import Path

import ablation
import harness
import numpy as np
import pandas as pd
import torch

from skmoby.experiment import ExperimentConfig


def _pca(X: np.ndarray, n_components: int = 50) -> torch.Tensor:
    flat = torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float32) / 255.0
    flat = flat - flat.mean(0)
    torch.manual_seed(0)  # pca_lowrank starts from a random projection
    _, _, v = torch.pca_lowrank(flat, q=n_components, center=False, niter=4)
    return flat @ v


def _knn(Z: torch.Tensor, rows: np.ndarray, k: int, chunk: int = 1024):
    """Distances and indices of the ``k`` nearest pool images (itself excluded) of ``rows``."""
    dist, idx = [], []
    for s in range(0, len(rows), chunk):
        r = torch.as_tensor(rows[s : s + chunk])
        d = torch.cdist(Z[r], Z)
        d[torch.arange(len(r)), r] = float("inf")
        v, i = d.topk(k, largest=False)
        dist.append(v)
        idx.append(i)
    return torch.cat(dist).numpy(), torch.cat(idx).numpy()


def selection_stats(
    out: Path, data_root: str | None, k: int = 10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per variant: class balance and atypicality of its picks (see module doc), and the
    share of each class in all its picks (a variant per row, a class per column)."""
    folders = sorted(p.parent for p in out.glob("*/selections.json"))
    if not folders:
        raise SystemExit(f"no OUT/<variant>/selections.json under {out}")
    spec = json.loads((folders[0] / "variant.json").read_text())
    cfg = ExperimentConfig.from_dict(json.loads((folders[0] / "config.json").read_text()))
    ds = ablation.build_dataset(
        cfg.dataset, data_root, spec["split"], spec["n_val"], spec["imbalance"]
    )
    picks: dict[str, list[np.ndarray]] = {}
    for folder in folders:
        cycles = json.loads((folder / "selections.json").read_text())["cycles"]
        picks[folder.name] = [np.asarray(c["selected"]) for c in cycles.values() if c["selected"]]
    Z = _pca(ds.X_train)
    rows_all = np.unique(np.concatenate([p for ps in picks.values() for p in ps]))
    dist, nn = _knn(Z, rows_all, k)
    y = np.asarray(ds.y_train)
    n_classes = len(ds.classes)
    # the majority label of each picked image's neighbours, once for all variants
    major = np.asarray([np.bincount(labels, minlength=n_classes).argmax() for labels in y[nn]])
    out_rows, class_rows = [], []
    for name, ps in picks.items():
        every = np.concatenate(ps)
        class_rows.append(
            pd.Series(
                np.bincount(y[every], minlength=n_classes) / len(every),
                index=list(ds.classes),
                name=name,
            )
        )
        shares, kl, kd, dis = [], [], [], []
        for sel in ps:
            counts = np.bincount(y[sel], minlength=n_classes) / len(sel)
            shares.append((counts.max(), counts.min()))
            nz = counts[counts > 0]
            kl.append(float((nz * np.log(nz * n_classes)).sum()))
            at = np.searchsorted(rows_all, sel)  # rows_all is sorted and holds every pick
            kd.append(dist[at].mean())
            dis.append(float((major[at] != y[sel]).mean()))
        shares = np.asarray(shares)
        row = dict(
            variant=name,
            picks=sum(map(len, ps)),
            largest=shares[:, 0].mean(),
            smallest=shares[:, 1].mean(),
            kl_uniform=np.mean(kl),
            knn_dist=np.mean(kd),
            knn_disagree=np.mean(dis),
        )
        if spec["imbalance"] is not None:
            row["rare_classes"] = float((y[every] % 2 == 0).mean())
            row["pool_rare"] = float((y % 2 == 0).mean())
        out_rows.append(row)
    table = pd.DataFrame(out_rows).set_index("variant")
    if ablation.REFERENCE in table.index:
        table["knn_dist"] /= table.loc[ablation.REFERENCE, "knn_dist"]
    return table, pd.DataFrame(class_rows)


def main(argv: list[str] | None = None) -> None:
    p = harness.parser(__doc__)
    p.add_argument("--out", required=True, help="the folder of an ablation run")
    harness.add_data_root(p)
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args(argv)
    table, classes = selection_stats(Path(args.out), args.data_root, args.k)
    print(table.round(3).to_string())
    print("\nShare of each class in all picks:")
    print(classes.round(3).to_string())
    table.to_csv(Path(args.out) / "selection_stats.csv")
    classes.to_csv(Path(args.out) / "class_shares.csv")


if __name__ == "__main__":
    main()
