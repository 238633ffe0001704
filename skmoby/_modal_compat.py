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
"""

from __future__ import annotations

import functools
import inspect
from importlib import metadata

__all__ = ["modal_version", "patch_modal", "query_returns_metrics"]

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

    Idempotent; called when :mod:`skmoby` is imported.

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
