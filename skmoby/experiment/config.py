"""The settings of a run (:class:`ExperimentConfig`), the methods and the named presets.

Kept free of PyTorch, so that the ``skmoby`` command checks its arguments at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The runner's methods. New ones go at the end: a method's position seeds its draws.
METHODS = (
    "mobyv2al",
    "coreset",
    "random",
    "entropy",
    "mobyv2al-typiclust",
    "mobyv2al-probcover",
    "mobyv2al-adaptive",
    "mobyv2al-margin",
)


#: How each trial's first labelled set is chosen: at random (the paper), or by TypiClust or
#: ProbCover on the features of a MoBYv2Classifier trained on the unlabelled pool alone.
INITIAL_STRATEGIES = ("random", "typiclust", "probcover")


def is_joint(method: str) -> bool:
    """Whether ``method`` trains the MoBYv2 learner (labelled and unlabelled images).

    Examples
    --------
    >>> is_joint("mobyv2al-typiclust"), is_joint("coreset")
    (True, False)
    """
    return method.startswith("mobyv2al")


def initial_labels(cfg: ExperimentConfig, n_pool: int, trial: int) -> np.ndarray:
    """The sorted pool indices that trial ``trial`` starts with labelled (seeded by it).

    Examples
    --------
    >>> initial_labels(ExperimentConfig(initial=3), n_pool=10, trial=0).tolist()
    [2, 4, 8]
    """
    return np.sort(
        np.random.RandomState(cfg.seed + trial).choice(n_pool, cfg.initial, replace=False)
    )


@dataclass
class ExperimentConfig:
    """Everything that defines a run; stored as ``config.json`` in the run's folder.

    Parameters
    ----------
    dataset : str
        A name accepted by :func:`~skmoby.datasets.load_dataset`.
    methods : list of str
        Any of ``"mobyv2al"``, ``"coreset"``, ``"random"``, ``"entropy"``,
        ``"mobyv2al-typiclust"``, ``"mobyv2al-probcover"``, ``"mobyv2al-adaptive"``,
        ``"mobyv2al-margin"``.
    backbone : str
        Backbone name for :class:`~skmoby.MoBYv2Classifier`.
    initial : int
        Size of the initial labelled set.
    budget : int
        Images labelled per cycle.
    cycles : int
        Number of train/evaluate cycles (selection happens between cycles).
    trials : int
        Repetitions with different seeds.
    epochs, batch_size, lr : int, int, float
        Training settings of every learner.
    unlabeled : {"lowest_loss", "random", "all"}
        Unlabelled training data of ``mobyv2al``: as many pool images as labelled ones,
        lowest contrastive loss first (the paper) or at random; or the whole pool.
    pool_subset : int or None
        Size of a random subset of the unlabelled pool scanned per cycle (the authors'
        code uses 10000); None scans the whole pool.
    seed : int
        Seed of trial 0; trial ``t`` uses ``seed + t``. At most ``2**32 - trials``, and
        about ``2**32 / 1000 - trials`` with the ``random`` method (numpy seeds are
        below ``2**32``).
    device : str
        Torch device for the learners (``"auto"``: CUDA when available).
    data_root : str or None
        Folder of the dataset files; ``download`` fetches missing ones.
    initial_strategy : {"random", "typiclust", "probcover"}
        How each trial chooses its ``initial`` labelled images, shared by all its
        methods: at random (the paper's protocol), or by :func:`~skmoby.typiclust` or
        :func:`~skmoby.probcover` on the features of a learner of the run's settings
        trained on the unlabelled pool alone (contrastive loss only, ``epochs``
        epochs over the pool, or over a ``pool_subset`` of it). The chosen sets are
        stored in the run folder's ``initial.json``.

    Examples
    --------
    >>> cfg = ExperimentConfig(dataset="digits", methods=["mobyv2al", "random"], cycles=3)
    >>> cfg.validate()
    >>> cfg.initial + cfg.budget * (cfg.cycles - 1)
    300
    """

    dataset: str = "digits"
    methods: list[str] = field(default_factory=lambda: ["mobyv2al", "random"])
    backbone: str = "cnn"
    initial: int = 100
    budget: int = 100
    cycles: int = 5
    trials: int = 3
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    unlabeled: str = "lowest_loss"
    pool_subset: int | None = None
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    download: bool = False
    initial_strategy: str = "random"

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting.

        Examples
        --------
        >>> ExperimentConfig(budget=0).validate()
        Traceback (most recent call last):
        ...
        ValueError: budget must be a positive int; got 0
        """

        def is_int(v):
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        for name in ("initial", "budget", "cycles", "trials", "epochs"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive int; got {v!r}")
        if not is_int(self.batch_size) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an int >= 2; got {self.batch_size!r}")
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, int | float)
            or not self.lr > 0
            or self.lr == float("inf")
        ):
            raise ValueError(f"lr must be a positive number; got {self.lr!r}")
        if not is_int(self.seed):
            raise ValueError(f"seed must be an int; got {self.seed!r}")
        # Trial t draws its labels from RandomState(seed + t); random selection also
        # seeds RandomState((seed + t) * 1000 + c) in cycle c. numpy seeds are < 2**32.
        top = 2**32 - self.trials
        if isinstance(self.methods, list | tuple) and "random" in self.methods:
            top = (2**32 - self.cycles) // 1000 - self.trials + 1
        if not 0 <= self.seed <= top:
            raise ValueError(
                f"seed must be in [0, {top}] for {self.trials} trials"
                + (" with the random method" if top < 2**32 - self.trials else "")
                + f" (numpy seeds are below 2**32); got "
                f"{self.seed!r}"
            )
        for name in ("dataset", "backbone", "device"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a str; got {getattr(self, name)!r}")
        if (
            not isinstance(self.methods, list | tuple)
            or not self.methods
            or any(not isinstance(m, str) or m not in METHODS for m in self.methods)
        ):
            raise ValueError(
                f"methods must be a non-empty list of {list(METHODS)}; got {self.methods!r}"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must not repeat a method; got {self.methods!r}")
        if self.unlabeled not in ("lowest_loss", "random", "all"):
            raise ValueError(
                f"unlabeled must be 'lowest_loss', 'random' or 'all'; got {self.unlabeled!r}"
            )
        if self.pool_subset is not None and (
            not is_int(self.pool_subset) or self.pool_subset < self.budget
        ):
            raise ValueError(
                f"pool_subset must be None or an int of at least budget "
                f"({self.budget}); got {self.pool_subset!r}"
            )
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ValueError(f"data_root must be a str or None; got {self.data_root!r}")
        if not isinstance(self.download, bool):
            raise ValueError(f"download must be a bool; got {self.download!r}")
        if self.initial_strategy not in INITIAL_STRATEGIES:
            raise ValueError(
                f"initial_strategy must be one of {list(INITIAL_STRATEGIES)}; got "
                f"{self.initial_strategy!r}"
            )
        if (
            self.initial_strategy != "random"
            and self.pool_subset is not None
            and self.pool_subset < self.initial
        ):
            raise ValueError(
                f"pool_subset must be at least initial ({self.initial}) with "
                f"initial_strategy={self.initial_strategy!r}, which picks the first labels "
                f"from that subset; got {self.pool_subset!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (what ``config.json`` stores).

        Examples
        --------
        >>> ExperimentConfig(dataset="digits", cycles=2).to_dict()["cycles"]
        2
        """
        return dataclasses.asdict(self)

    def _check_pool(self, n_pool: Any) -> None:
        self.validate()
        if (
            isinstance(n_pool, bool)
            or not isinstance(n_pool, int | np.integer)
            or n_pool < self.initial + self.budget * (self.cycles - 1)
        ):
            raise ValueError(
                f"n_pool must be an int of at least initial + budget * (cycles - 1); got {n_pool!r}"
            )

    def n_labelled(self) -> list[int]:
        """Labelled images in each cycle: ``initial + cycle * budget``.

        Examples
        --------
        >>> ExperimentConfig(initial=100, budget=50, cycles=3).n_labelled()
        [100, 150, 200]
        """
        return [self.initial + c * self.budget for c in range(self.cycles)]

    def n_unlabelled(self, n_pool: int) -> list[int]:
        """Unlabelled training images of ``mobyv2al`` in each cycle, on a pool of ``n_pool``.

        ``"all"``: the rest of the pool; otherwise as many as labelled (at most the rest
        of the pool, and at most ``pool_subset`` from the second cycle on, when the
        lowest-loss subset is chosen among a scanned subset of the pool).

        Examples
        --------
        >>> cfg = ExperimentConfig(initial=100, budget=50, cycles=3, unlabeled="all")
        >>> cfg.n_unlabelled(n_pool=1000)
        [900, 850, 800]
        >>> ExperimentConfig(initial=100, budget=50, cycles=3).n_unlabelled(n_pool=1000)
        [100, 150, 200]
        """
        self._check_pool(n_pool)
        sizes = []
        for c, n_lab in enumerate(self.n_labelled()):
            rest = max(n_pool - n_lab, 0)
            if self.unlabeled == "all":
                sizes.append(rest)
            elif self.unlabeled == "lowest_loss" and c > 0 and self.pool_subset is not None:
                sizes.append(min(n_lab, rest, self.pool_subset))
            else:
                sizes.append(min(n_lab, rest))
        return sizes

    def training_steps(self, n_pool: int) -> Any:
        """SGD steps that one trial of each method takes, cycle by cycle.

        Every cycle trains a fresh learner for ``epochs`` epochs. A supervised epoch is
        one pass over the labelled images; a ``mobyv2al`` epoch alternates labelled and
        unlabelled batches over the larger of the two sets (see
        :class:`~skmoby.MoBYv2Classifier`), so it takes twice as many steps as the
        larger set has batches. Multiplying by the seconds per step of a device (for
        example ``fit_seconds`` of a finished cycle divided by its steps) estimates
        the run time.

        Parameters
        ----------
        n_pool : int
            Number of training images of the dataset (the pool).

        Returns
        -------
        pandas.DataFrame
            Index ``cycle``; column ``n_labelled`` and one column of steps per method.

        Examples
        --------
        >>> cfg = ExperimentConfig(methods=["mobyv2al", "random"], initial=100,
        ...                        budget=100, cycles=2, epochs=10, batch_size=64)
        >>> cfg.training_steps(n_pool=1000)  # doctest: +NORMALIZE_WHITESPACE
               n_labelled  mobyv2al  random
        cycle
        0             100        40      20
        1             200        80      40
        """
        import pandas as pd

        from ..classifier import steps_per_epoch

        self._check_pool(n_pool)

        labeled = self.n_labelled()
        table = pd.DataFrame(
            {"n_labelled": labeled}, index=pd.RangeIndex(self.cycles, name="cycle")
        )
        for method in self.methods:
            if is_joint(method):
                per_epoch = [
                    steps_per_epoch(n, u, self.batch_size)
                    for n, u in zip(labeled, self.n_unlabelled(n_pool), strict=True)
                ]
            else:
                per_epoch = [steps_per_epoch(n, 0, self.batch_size) for n in labeled]
            table[method] = [self.epochs * k for k in per_epoch]
        return table

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentConfig:
        """Rebuild a configuration from :meth:`to_dict`; unknown keys raise ``ValueError``.

        Parameters
        ----------
        d : dict
            Settings by name.

        Returns
        -------
        ExperimentConfig

        Examples
        --------
        >>> cfg = ExperimentConfig(dataset="digits", trials=1)
        >>> ExperimentConfig.from_dict(cfg.to_dict()) == cfg
        True
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown experiment settings: {sorted(unknown)}")
        return cls(**d)


#: The paper's protocols (METHOD.md) and CPU-sized ones, selectable by name.
PRESETS: dict[str, dict[str, Any]] = {
    # The digits pool is small, so the demo trains MoBYv2 on all of it ("all"); with the
    # paper's subset rule (as many unlabelled images as labelled ones) 30-120 images are
    # too few for the contrastive loss to help. It shows skmoby's default selection
    # (adaptive) against random selection; each more joint method would add about as
    # much time again.
    "demo": dict(
        dataset="digits",
        methods=["mobyv2al-adaptive", "random"],
        backbone="cnn",
        initial=30,
        budget=30,
        cycles=4,
        trials=2,
        epochs=20,
        batch_size=32,
        lr=0.05,
        unlabeled="all",
    ),
    "cifar10": dict(
        dataset="cifar10",
        methods=["mobyv2al", "coreset", "random"],
        backbone="vgg16",
        initial=5000,
        budget=2500,
        cycles=7,
        trials=5,
        epochs=200,
        batch_size=128,
        lr=0.01,
        pool_subset=10000,
    ),
    "cifar100": dict(
        dataset="cifar100",
        methods=["mobyv2al", "coreset", "random"],
        backbone="vgg16",
        initial=5000,
        budget=2500,
        cycles=7,
        trials=5,
        epochs=200,
        batch_size=128,
        lr=0.01,
        pool_subset=10000,
    ),
    "svhn": dict(
        dataset="svhn",
        methods=["mobyv2al", "coreset", "random"],
        backbone="resnet18",
        initial=1000,
        budget=1000,
        cycles=10,
        trials=5,
        epochs=200,
        batch_size=128,
        lr=0.01,
        pool_subset=10000,
    ),
    "fashionmnist": dict(
        dataset="fashionmnist",
        methods=["mobyv2al", "coreset", "random"],
        backbone="resnet18",
        initial=1000,
        budget=1000,
        cycles=10,
        trials=5,
        epochs=200,
        batch_size=128,
        lr=0.01,
        pool_subset=10000,
    ),
    "cifar10-imbalanced": dict(
        dataset="cifar10-imbalanced",
        methods=["mobyv2al", "coreset", "random"],
        backbone="resnet18",
        initial=1000,
        budget=1000,
        cycles=7,
        trials=5,
        epochs=200,
        batch_size=128,
        lr=0.01,
        pool_subset=10000,
    ),
    # LeNet-5 has no batch norm, so at lr 0.05 a MoBYv2 fit can lose all its ReLUs
    # (constant features, chance accuracy); 0.02 keeps them training.
    "fashionmnist-cpu": dict(
        dataset="fashionmnist",
        methods=["mobyv2al", "coreset", "random"],
        backbone="lenet5",
        initial=200,
        budget=200,
        cycles=5,
        trials=3,
        epochs=30,
        batch_size=64,
        lr=0.02,
        pool_subset=5000,
    ),
}


# The public home of the class (pickles and the documentation name it there).
ExperimentConfig.__module__ = "skmoby.experiment"
