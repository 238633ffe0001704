"""Version-gated fixes for running skmoby's jobs on Ray, kept in one place.

Under ``uv run``, Ray releases that know ``RAY_ENABLE_UV_RUN_RUNTIME_ENV`` start every
worker of a local cluster with ``uv run`` in an uploaded copy of the current folder;
:func:`workers_use_this_interpreter` switches that off for a cluster skmoby starts. Ray's
progress-bar support replaces ``builtins.print`` in the driver; :func:`own_print_kept`
puts the original back when skmoby's cluster stops.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from collections.abc import Iterator

__all__ = ["own_print_kept", "workers_use_this_interpreter"]


@contextlib.contextmanager
def workers_use_this_interpreter() -> Iterator[None]:
    """Keep Ray from rebuilding the driver's ``uv run`` environment for a local cluster.

    Under ``uv run``, recent Ray releases start every worker with ``uv run`` inside a
    copy of the current folder, uploaded zipped through its object store: the
    upload is refused past 512 MiB (a dataset, ``skmoby-results/``), Ray
    raises when ``pyproject.toml`` lies outside it (``uv run --project DIR``), and each
    worker environment is synced anew. A local cluster shares this machine, so its
    workers can run this interpreter as they are. Users who set
    ``RAY_ENABLE_UV_RUN_RUNTIME_ENV`` themselves keep their choice.

    Examples
    --------
    >>> with workers_use_this_interpreter():
    ...     pass
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # a Ray whose layout differs, or none: nothing to switch off
        yield
        return
    name = "RAY_ENABLE_UV_RUN_RUNTIME_ENV"
    if name in os.environ or not hasattr(ray_constants, name):
        yield
        return
    saved = getattr(ray_constants, name)
    setattr(ray_constants, name, False)
    try:
        yield
    finally:
        setattr(ray_constants, name, saved)


@contextlib.contextmanager
def own_print_kept() -> Iterator[None]:
    """Give ``builtins.print`` back its value of the block's start when the block ends.

    Examples
    --------
    >>> with own_print_kept():
    ...     pass
    """
    own_print = builtins.print
    try:
        yield
    finally:
        builtins.print = own_print
