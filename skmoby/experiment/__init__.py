"""The pool-based active-learning protocol of MoBYv2AL, with results that survive crashes.

A run compares methods over trials. In each trial all methods start from the same
labelled set (drawn at random, as in the paper, or chosen: ``initial_strategy``); every
cycle trains a fresh learner (modAL ``ActiveLearner``), evaluates it on the test set and
selects the next ``budget`` images to label. After every cycle the results table
(``results.csv``), the selections (``selections.json``) and the configuration
(``config.json``) are written atomically to the run's folder, so a crash loses at most
the cycle in progress, and :func:`resume_experiment` carries on from there.

Methods:

``mobyv2al``
    :class:`~skmoby.MoBYv2Classifier` + :func:`~skmoby.coreset`; trained on the labelled
    set plus as many unlabelled images, those with the lowest contrastive loss under the
    previous cycle's model (random in the first cycle), as in the paper (Section 4.2).
``coreset``
    The same backbone trained supervised-only (``lambda_c=0``, no unlabelled data) +
    CoreSet on its features: the paper's CoreSet baseline.
``random``, ``entropy``
    The supervised learner with random selection or maximum-entropy selection.

The package, one concern per module, imports running one way (each module only imports
those above it):

``config``
    :class:`ExperimentConfig`, :data:`METHODS`, :data:`PRESETS` (no PyTorch).
``errors``
    The errors of a run.
``locks``, ``store``
    The run folder: its lock, its files, and the checks made when it is read.
``protocol``
    One (method, trial) job: its learner, its strategy and its cycles.
``initial``
    Each trial's chosen first labelled set (``initial_strategy``).
``runners``
    Where jobs execute (this process, worker processes, Ray); they receive the job as
    a picklable function and know nothing else of the protocol.
``run``, ``plan``, ``report``
    Running and resuming a run, its plan and cost, its table and plots.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import METHODS, PRESETS, ExperimentConfig
from .errors import (
    JobsFailedError,
    OptionError,
    OtherRunError,
    RunFolderError,
    RunFolderLockedError,
    WorkerStartError,
)

__all__ = [
    "METHODS",
    "PRESETS",
    "SEEDED",
    "STRATEGIES",
    "ExperimentConfig",
    "JobsFailedError",
    "OptionError",
    "OtherRunError",
    "RunFolderError",
    "RunFolderLockedError",
    "RunPlan",
    "RunState",
    "WorkerStartError",
    "check_run",
    "choose_initial_labels",
    "load_results",
    "lock_folder",
    "make_estimator",
    "plan_run",
    "plot_learning_curves",
    "resume_experiment",
    "run_experiment",
    "summarize",
]

# Imported on first use, so that the settings and errors above (and the ``skmoby``
# command's argument checks) are available without importing PyTorch.
_WHERE = {
    "RunState": ".run",
    "check_run": ".run",
    "run_experiment": ".run",
    "resume_experiment": ".run",
    "SEEDED": ".protocol",
    "STRATEGIES": ".protocol",
    "make_estimator": ".protocol",
    "choose_initial_labels": ".initial",
    "RunPlan": ".plan",
    "plan_run": ".plan",
    "load_results": ".report",
    "summarize": ".report",
    "plot_learning_curves": ".report",
    "lock_folder": ".locks",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'skmoby.experiment' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
