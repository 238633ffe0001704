"""Module paths of earlier releases that pickles refer to, mapped to today's.

A pickle names each class and function by module and name. skmoby 0.1.0.dev0 kept the
estimator's parts in flat private modules (``skmoby._skorch_parts``, ``skmoby._engine``,
...), so its pickles name those. :func:`install` adds an import hook that answers an
import of such a module with a stand-in whose names resolve, on first use, to where
they live now. Importing the stand-ins imports nothing else until a name is read, so
``import skmoby`` stays free of PyTorch.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

__all__ = ["MOVED", "install"]

#: Old module -> {name: new module}.
MOVED: dict[str, dict[str, str]] = {
    "skmoby._skorch_parts": {
        "MilestoneLR": "skmoby.classifier.callbacks",
        "QuietPrintLog": "skmoby.classifier.callbacks",
        "valid_accuracy": "skmoby.classifier.callbacks",
        "estimator_repr": "skmoby.classifier._sklearn",
        "expected_failed_checks": "skmoby.classifier._sklearn",
    },
    "skmoby._validation": {
        "UnlabeledData": "skmoby.classifier._unlabeled",
        "stack_unlabeled": "skmoby.classifier._unlabeled",
    },
    "skmoby._data": {"TrainingBatches": "skmoby.classifier._batches"},
    "skmoby._engine": {"CapturedSteps": "skmoby.classifier._step"},
}


class _Moved(ModuleType):
    def __getattr__(self, name: str) -> Any:
        target = MOVED[self.__name__].get(name)
        if target is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(target), name)
        setattr(self, name, value)
        return value


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return _Moved(spec.name, f"Names of an earlier skmoby, now elsewhere: {spec.name}.")

    def exec_module(self, module: ModuleType) -> None:
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None):
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader())


def install() -> None:
    """Let the old module paths in :data:`MOVED` import (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
