"""The errors of the experiment runner, in a module of their own so that every layer
(the run folder, the runners, the driver and the command line) can name them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class RunFolderError(ValueError):
    """A run folder that cannot be used as it is; the message names the file and line.

    Examples
    --------
    >>> from skmoby.experiment import RunFolderError
    >>> issubclass(RunFolderError, ValueError)
    True
    """


class RunFolderLockedError(RunFolderError):
    """Another process is writing the run folder; the message names it.

    Examples
    --------
    >>> from skmoby.experiment import RunFolderError, RunFolderLockedError
    >>> issubclass(RunFolderLockedError, RunFolderError)
    True
    """


class JobsFailedError(RuntimeError):
    """Some (method, trial) jobs of a run failed; the others finished and were saved.

    Attributes
    ----------
    failures : list of (str, int, str)
        ``(method, trial, traceback)`` of each failed job.
    results : pandas.DataFrame
        The rows of the run folder when the run ended.
    out : path
        The run folder, which :func:`~skmoby.experiment.resume_experiment` completes.

    Examples
    --------
    >>> err = JobsFailedError([("random", 1, "Traceback ...")], None, "skmoby-results/x")
    >>> err.failures[0][:2]
    ('random', 1)
    """

    def __init__(
        self, failures: list[tuple[str, int, str]], results: Any, out: str | os.PathLike
    ) -> None:
        self.failures = failures
        self.results = results
        self.out = out
        names = ", ".join(f"({m}, trial {t})" for m, t, _ in failures)
        super().__init__(
            f"{len(failures)} job(s) failed: {names}. The other jobs finished "
            f"and their cycles are saved; resuming {out} redoes only what is "
            "missing. First traceback:\n" + failures[0][2]
        )


class WorkerStartError(RuntimeError):
    """A worker process could not set itself up (its traceback is in the message).

    Examples
    --------
    >>> issubclass(WorkerStartError, RuntimeError)
    True
    """


class OtherRunError(RunFolderError):
    """The run folder holds a run of another protocol.

    Attributes
    ----------
    out : Path
        The folder.
    changes : str
        The settings that differ, as ``"cycles 1 -> 2"``.

    Examples
    --------
    >>> str(OtherRunError("runs/a", "cycles 1 -> 2")).split(";")[0]
    'runs/a holds a run with another configuration (cycles 1 -> 2)'
    """

    def __init__(self, out: str | os.PathLike, changes: str) -> None:
        self.out, self.changes = out, changes
        super().__init__(
            f"{out} holds a run with another configuration ({changes}); resume it with "
            "resume_experiment() or use another folder"
        )


class OptionError(ValueError):
    """An invalid option of a run, naming the options it is about as data.

    The message is a template with a ``{name}`` field per option, so that a front end
    (the ``skmoby`` command) can name its own spelling of them with :meth:`worded`.

    Parameters
    ----------
    template : str
        The message, with ``{name}`` where option ``name`` is named.
    *options : str
        The options (keyword names) the template names.

    Examples
    --------
    >>> err = OptionError("{jobs_per_gpu} (2) needs a GPU", "jobs_per_gpu")
    >>> str(err)
    'jobs_per_gpu (2) needs a GPU'
    >>> err.worded(lambda name: "--" + name.replace("_", "-"))
    '--jobs-per-gpu (2) needs a GPU'
    """

    def __init__(self, template: str, *options: str) -> None:
        self.template, self.options = template, options
        super().__init__(self.worded(str))

    def worded(self, spell: Callable[[str], str]) -> str:
        """The message with each option named by ``spell(name)``."""
        return self.template.format(**{name: spell(name) for name in self.options})


# The public home of the errors (tracebacks and pickles name them there).
for _error in (
    RunFolderError,
    RunFolderLockedError,
    JobsFailedError,
    WorkerStartError,
    OtherRunError,
    OptionError,
):
    _error.__module__ = "skmoby.experiment"
del _error
