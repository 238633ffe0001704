"""What a run costs before it starts: its training steps and a measured time per step."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..datasets import ImageDataset
from .config import ExperimentConfig, is_joint
from .protocol import make_estimator

#: A run estimated past this many hours on a CPU is called GPU-sized.
CPU_HOURS_WARNING = 4.0


@dataclass(frozen=True)
class RunPlan:
    """The training a run has left and what it costs on this machine.

    Attributes
    ----------
    fits : int
        (method, trial, cycle) fits left.
    steps : dict of str to int
        Training steps left per method, over all its trials and cycles.
    seconds_per_step : dict of str to float
        Per method, measured here on a short fit of the run's own learner.
    device : str
        The device the measurement ran on (``"auto"`` resolved).

    Examples
    --------
    >>> plan = RunPlan(fits=2, steps={"random": 100}, seconds_per_step={"random": 0.5},
    ...                device="cpu")
    >>> plan.total_steps, plan.seconds
    (100, 50.0)
    """

    fits: int
    steps: dict[str, int]
    seconds_per_step: dict[str, float]
    device: str

    @property
    def total_steps(self) -> int:
        return sum(self.steps.values())

    @property
    def seconds(self) -> float:
        """Estimated training time (selection and evaluation come on top)."""
        return sum(n * self.seconds_per_step.get(m, 0.0) for m, n in self.steps.items())

    @property
    def gpu_sized_on_a_cpu(self) -> bool:
        return self.device == "cpu" and self.seconds > CPU_HOURS_WARNING * 3600

    def lines(self) -> list[str]:
        """The plan in a few lines for the terminal."""
        if not self.fits:
            return ["nothing left to run: every cycle of the protocol is saved"]
        per_method = ", ".join(f"{m} {n:,}" for m, n in self.steps.items())
        speeds = ", ".join(f"{m} {s:.3g} s" for m, s in self.seconds_per_step.items())
        out = [
            f"plan: {self.fits} fits, {self.total_steps:,} training steps ({per_method})",
            f"      measured here on {self.device}, per step: {speeds}; about "
            f"{_duration(self.seconds)} of training in all",
        ]
        if self.gpu_sized_on_a_cpu:
            out.append(
                f"warning: this protocol is sized for a GPU: about {_duration(self.seconds)} "
                "on this CPU. Run it on a GPU (--device cuda), choose a CPU-sized preset "
                "(--preset fashionmnist-cpu), or lower --epochs, --cycles or --trials"
            )
        return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


#: The plan's name for the fits that choose the first labels (``initial_strategy``).
INITIAL_FITS = "first labels"


def steps_left(
    cfg: ExperimentConfig,
    n_pool: int,
    done: Iterable[tuple[str, int, int]] = (),
    initial_done: Iterable[int] = (),
) -> tuple[int, dict[str, int]]:
    """Fits and training steps per method that the run still has to do; with a chosen
    first labelled set (``initial_strategy``), also the contrastive fits over the pool
    (or ``pool_subset``) that choose it for the trials not in ``initial_done``, under
    :data:`INITIAL_FITS`.

    Examples
    --------
    >>> cfg = ExperimentConfig(methods=["random"], initial=100, budget=100, cycles=2,
    ...                        trials=2, epochs=10, batch_size=64)
    >>> steps_left(cfg, n_pool=1000)
    (4, {'random': 120})
    >>> steps_left(cfg, n_pool=1000, done=[("random", 0, 0)])
    (3, {'random': 100})
    >>> cfg.initial_strategy = "typiclust"
    >>> steps_left(cfg, n_pool=1000, initial_done=[0])  # 10 epochs of 16 batches
    (5, {'first labels': 160, 'random': 120})
    """
    from ..classifier import steps_per_epoch

    table = cfg.training_steps(n_pool)
    done = set(done)
    fits, steps = 0, {}
    if cfg.initial_strategy != "random":
        trials = [t for t in range(cfg.trials) if t not in set(initial_done)]
        pool = min(n_pool, cfg.pool_subset or n_pool)
        fits += len(trials)
        steps[INITIAL_FITS] = len(trials) * cfg.epochs * steps_per_epoch(0, pool, cfg.batch_size)
    for m in cfg.methods:
        left = [
            (t, c) for t in range(cfg.trials) for c in range(cfg.cycles) if (m, t, c) not in done
        ]
        fits += len(left)
        steps[m] = int(sum(table[m].iloc[c] for _, c in left))
    return fits, steps


def seconds_per_step(cfg: ExperimentConfig, ds: ImageDataset, method: str) -> tuple[float, str]:
    """Seconds one training step of ``method``'s learner takes here, and the device.

    A learner of the run's own settings is fitted for three epochs on one batch of
    labelled images (and one of unlabelled images for ``mobyv2al`` methods); the epochs
    after the first, past initialisation and warm-up, are timed. Where a step is quick
    (under 0.2 s), a second fit on eight batches times at least 16 more steps, so that
    the figure is not one noisy step.
    """
    per_step, device = _probe(cfg, ds, method, batches=1)
    if per_step < 0.2:
        per_step, device = _probe(cfg, ds, method, batches=8)
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()  # leave the GPU's memory to the run
    return per_step, device


def _probe(cfg: ExperimentConfig, ds: ImageDataset, method: str, batches: int) -> tuple[float, str]:
    rng = np.random.RandomState(cfg.seed)
    order = rng.permutation(len(ds.X_train))
    n = min(batches * cfg.batch_size, len(order) // 2)
    lab = order[:n]
    if len(np.unique(ds.y_train[lab])) < 2:  # a fit needs two classes
        lab = np.concatenate(
            [lab, [next(i for i in order[n:] if ds.y_train[i] != ds.y_train[lab[0]])]]
        )
    kw = {"X_unlabeled": ds.X_train[order[-n:]]} if is_joint(method) else {}
    est = make_estimator(cfg, method, ds, cfg.seed)
    est.set_params(max_epochs=3)
    est.fit(ds.X_train[lab], ds.y_train[lab], **kw)
    # The first epoch carries initialisation and warm-up; the median step of the others
    # is the machine's speed.
    times = [float(e["dur"]) / max(1, len(e["batches"])) for e in est.history[1:]]
    return float(np.median(times)), str(est.device_)


def plan_run(
    cfg: ExperimentConfig,
    ds: ImageDataset,
    done: Iterable[tuple[str, int, int]] = (),
    initial_done: Iterable[int] = (),
) -> RunPlan:
    """The :class:`RunPlan` of ``cfg`` on ``ds`` with the cycles in ``done`` saved.

    Parameters
    ----------
    cfg : ExperimentConfig
        The run's settings.
    ds : ImageDataset
        The run's data.
    done : iterable of (str, int, int)
        The (method, trial, cycle) already saved.
    initial_done : iterable of int
        The trials whose chosen first labelled set is saved (``initial_strategy``).

    Returns
    -------
    RunPlan

    Examples
    --------
    >>> from skmoby.datasets import load_dataset
    >>> cfg = ExperimentConfig(methods=["random"], initial=20, budget=10, cycles=2,
    ...                        trials=1, epochs=1, device="cpu")
    >>> plan = plan_run(cfg, load_dataset("digits"), done=[("random", 0, 0)])
    >>> plan.fits, plan.steps
    (1, {'random': 1})
    """
    fits, steps = steps_left(cfg, len(ds.X_train), done, initial_done)
    measured: dict[str, float] = {}
    device = cfg.device
    kinds: dict[bool, tuple[float, str]] = {}  # MoBYv2 learner or supervised learner
    for m in steps:
        joint = m == INITIAL_FITS or is_joint(m)  # the first labels: a MoBYv2 learner
        if steps[m] and joint not in kinds:  # only learners that still have to train
            kinds[joint] = seconds_per_step(cfg, ds, "mobyv2al" if joint else m)
        if joint in kinds:
            measured[m], device = kinds[joint]
    return RunPlan(fits=fits, steps=steps, seconds_per_step=measured, device=device)
