"""Version-gated fixes that let modAL's ``ActiveLearner`` run on current scikit-learn.

modAL (``modal-python``) 0.4.2.1, its last release, calls
``check_X_y(..., force_all_finite=...)`` in ``ActiveLearner.fit``/``teach``. scikit-learn
1.6 renamed that argument to ``ensure_all_finite`` and 1.8 removed the old name, so
``teach`` raises ``TypeError`` there (modAL issue #196). When, and only when, the
installed modAL is at most 0.4.2.1 and scikit-learn's ``check_X_y`` no longer accepts
``force_all_finite``, :func:`patch_modal` replaces the ``check_X_y`` that modAL imported
(into ``modAL.models.learners`` in 0.4.2.x, ``modAL.models.base`` in 0.4.1) by a wrapper
that renames the argument. Nothing else in
modAL or scikit-learn is touched. A newer modAL is left alone.

modAL also changed what a query strategy returns: 0.4.1 expects the selected indices
(a tuple is passed through as the query's result), 0.4.2.x expects
``(indices, metrics)``. :func:`query_returns_metrics` tells which contract the installed
release uses.

modAL 0.4.2.x's ``query`` also calls the strategy inside a bare ``except:`` and calls it
again on any exception: a Ctrl-C (``KeyboardInterrupt``) during the selection only
restarted it, and an error was computed twice before it reached the caller. skmoby's
strategies run inside :func:`modal_retry_guard`, which recognises that repeated call and
raises the first call's exception at once, without running the strategy again.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterator
from importlib import metadata, util
from types import CodeType, FrameType
from typing import Any

__all__ = [
    "guard_modal_retry",
    "modal_retry_guard",
    "modal_version",
    "patch_modal",
    "query_returns_metrics",
]

_LAST_BROKEN = (0, 4, 2, 1)


def _parse(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def modal_version() -> tuple[int, ...] | None:
    """The installed modAL release as a tuple of ints, or ``None`` if it is missing."""
    try:
        return _parse(metadata.version("modAL-python"))
    except metadata.PackageNotFoundError:
        return None


def query_returns_metrics(version: tuple[int, ...] | None = None) -> bool:
    """Whether modAL's ``query`` expects a strategy to return ``(indices, metrics)``.

    True from modAL 0.4.2 on (and when modAL is not installed); False for 0.4.1 and
    older, where a strategy returns the indices only.
    """
    version = modal_version() if version is None else version
    return version is None or version >= (0, 4, 2)


def _needs_patch(version: tuple[int, ...] | None, check_X_y) -> bool:
    if version is None or version > _LAST_BROKEN:
        return False
    return "force_all_finite" not in inspect.signature(check_X_y).parameters


# Modules of modAL that import scikit-learn's check_X_y: 0.4.2.x calls it from
# ``learners``, 0.4.1 from ``base``.
_MODULES = ("modAL.models.learners", "modAL.models.base")


def patch_modal() -> bool:
    """Apply the ``force_all_finite`` fix to modAL if this installation needs it.

    Idempotent; called when :mod:`skmoby.classifier` or the strategies are imported.

    Returns
    -------
    bool
        True if modAL's ``check_X_y`` is (now) the renaming wrapper.

    Examples
    --------
    >>> isinstance(patch_modal(), bool)
    True
    """
    import importlib

    version = modal_version()
    patched = False
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        current = getattr(module, "check_X_y", None)
        if current is None:
            continue
        if getattr(current, "_skmoby_patched", False):
            patched = True
            continue
        if not _needs_patch(version, current):
            continue
        module.check_X_y = _renaming(current)
        patched = True
    return patched


def _renaming(check_X_y):
    @functools.wraps(check_X_y)
    def wrapper(*args, **kwargs):
        if "force_all_finite" in kwargs:
            kwargs["ensure_all_finite"] = kwargs.pop("force_all_finite")
        return check_X_y(*args, **kwargs)

    wrapper._skmoby_patched = True  # type: ignore[attr-defined]
    return wrapper


# ---------------------------------------------------------------------------------------
# modAL's retry of a failed strategy call

_retry = threading.local()  # .pending: (modAL query frame, its f_lasti, exception)
_SEARCH_DEPTH = 16  # frames between a strategy's guard and modAL's query, at most


@functools.cache
def _modal_dir() -> str | None:
    spec = util.find_spec("modAL")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.normcase(os.path.realpath(next(iter(spec.submodule_search_locations))))


@functools.lru_cache(maxsize=1024)
def _is_modal_query(code: CodeType) -> bool:
    """Whether ``code`` is a ``query`` method of modAL (a learner's or a committee's)."""
    if code.co_name != "query":
        return False
    root = _modal_dir()
    if root is None:
        return False
    path = os.path.normcase(os.path.realpath(code.co_filename))
    return path.startswith(root + os.sep)


@functools.cache
def _modal_retries() -> bool:
    """Whether the installed modAL's ``query`` calls a failed strategy again: the
    ``(indices, metrics)`` releases (0.4.2 on) do, from a bare ``except:``."""
    version = modal_version()
    return version is not None and version >= (0, 4, 2)


def _modal_query_frame(frame: FrameType | None) -> FrameType | None:
    for _ in range(_SEARCH_DEPTH):
        if frame is None:
            return None
        if _is_modal_query(frame.f_code):
            return frame
        frame = frame.f_back
    return None


@contextlib.contextmanager
def modal_retry_guard() -> Iterator[None]:
    """Run a query strategy's body so that modAL's retry re-raises its first error.

    modAL 0.4.2.x's ``query`` calls the strategy in a bare ``except:`` and, whatever
    was raised, calls it again from the same ``query`` call. Inside this guard, an
    exception (a ``KeyboardInterrupt`` included) is remembered with the ``query`` call
    it happened in; when that same call invokes the strategy again from another line,
    the guard raises the remembered exception before the body runs. Only where modAL
    retries (0.4.2 on); the exception, and what its traceback holds, is let go at the
    next guarded call. A strategy called
    outside modAL's ``query``, or called again by the caller's own code within one
    ``query`` call (a wrapper that retries), runs as usual. Per thread.

    Examples
    --------
    >>> def strategy(learner, X_pool, n_instances=1):
    ...     with modal_retry_guard():
    ...         return list(range(n_instances)), [0.0] * n_instances
    >>> strategy(None, [[0], [1]], 2)[0]
    [0, 1]
    """
    pending = getattr(_retry, "pending", None)
    _retry.pending = None  # held (frames, features) only until the next guarded call
    query = _modal_query_frame(sys._getframe(1)) if _modal_retries() else None
    if query is None:
        yield
        return
    if pending is not None and pending[0] is query and pending[1] != query.f_lasti:
        raise pending[2]  # modAL's repeated call: the first call's error, at once
    lasti = query.f_lasti
    try:
        yield
    except BaseException as exc:
        _retry.pending = (query, lasti, exc)
        raise


def guard_modal_retry(strategy: Callable[..., Any]) -> Callable[..., Any]:
    """``strategy`` wrapped in :func:`modal_retry_guard` (for strategies defined
    elsewhere, such as a user's).

    Examples
    --------
    >>> guarded = guard_modal_retry(lambda learner, X_pool, n_instances=1: ([0], [1.0]))
    >>> guarded(None, [[5]])
    ([0], [1.0])
    """

    @functools.wraps(strategy)
    def call(*args: Any, **kwargs: Any) -> Any:
        with modal_retry_guard():
            return strategy(*args, **kwargs)

    return call
