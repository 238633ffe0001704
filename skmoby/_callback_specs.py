"""Skorch callbacks named on the command line (``--callback MODULE:NAME``)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class CallbackSpecs:
    """Callbacks named on the command line as ``MODULE:NAME``, built for each estimator.

    ``NAME`` is a skorch callback instance, a callback class (instantiated without
    arguments) or a function ``f(method=..., trial=..., cycle=...)`` returning a
    callback or a list of them. Picklable, so worker processes rebuild them.

    Parameters
    ----------
    specs : list of str
        ``"MODULE:NAME"`` strings.

    Examples
    --------
    >>> make = CallbackSpecs(["skorch.callbacks:EpochTimer"])
    >>> [type(cb).__name__ for cb in make(method="random", trial=0, cycle=0)]
    ['EpochTimer']
    """

    def __init__(self, specs: list[str]) -> None:
        from skorch.callbacks import Callback

        self.specs = list(specs)
        for spec in self.specs:
            obj = self._resolve(spec)
            ok = isinstance(obj, Callback) or (
                issubclass(obj, Callback) if isinstance(obj, type) else callable(obj)
            )
            if not ok:
                raise ValueError(
                    f"--callback {spec}: not a skorch callback or a function; got {obj!r}"
                )

    @staticmethod
    def _resolve(spec: str) -> Any:
        module, sep, name = spec.partition(":")
        if not sep or not module or not name:
            raise ValueError(f"--callback must be MODULE:NAME; got {spec!r}")
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())  # like `python -m`, find modules of this folder
        try:
            obj = importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"--callback {spec}: cannot import {module!r} ({exc})") from None
        for part in name.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"--callback {spec}: {module!r} has no {name!r}")
            obj = getattr(obj, part)
        return obj

    def __call__(self, method: str, trial: int, cycle: int) -> list[Any]:
        from skorch.callbacks import Callback

        built = []
        for spec in self.specs:
            obj = self._resolve(spec)
            if isinstance(obj, type) and issubclass(obj, Callback):
                got = obj()
            elif isinstance(obj, Callback):
                got = obj
            elif callable(obj):
                got = obj(method=method, trial=trial, cycle=cycle)
            else:
                raise ValueError(f"--callback {spec}: not a skorch callback or a function")
            built.extend(got if isinstance(got, list | tuple) else [got])
        return built
