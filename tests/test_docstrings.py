"""Every public name is documented with a runnable example (run by --doctest-modules)."""

import importlib
import inspect
import pkgutil

import pytest

import skmoby

MODULES = ["skmoby"] + [
    m.name
    for m in pkgutil.walk_packages(skmoby.__path__, "skmoby.")
    if not any(part.startswith("_") for part in m.name.split("."))
]
PUBLIC = sorted(
    {
        (mod, name)
        for mod in MODULES
        for name in getattr(importlib.import_module(mod), "__all__", [])
        if inspect.isclass(getattr(importlib.import_module(mod), name))
        or inspect.isfunction(getattr(importlib.import_module(mod), name))
    }
)
# What users call on the estimator and the experiment settings (the other public
# methods are skorch and torch extension hooks, documented without examples).
USER_METHODS = {
    "MoBYv2Classifier": [
        "fit",
        "partial_fit",
        "predict",
        "predict_proba",
        "score",
        "transform",
        "contrastive_loss",
        "fit_transform",
    ],
    "ExperimentConfig": [
        "validate",
        "to_dict",
        "from_dict",
        "n_labelled",
        "n_unlabelled",
        "training_steps",
    ],
}


def _numpydoc_example(obj):
    doc = inspect.getdoc(obj) or ""
    return "Examples\n--------" in doc and ">>> " in doc.split("Examples\n--------")[1]


def test_every_module_has_a_public_api():
    assert len(PUBLIC) > 30


@pytest.mark.parametrize("mod, name", PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_public_name_has_an_example(mod, name):
    obj = getattr(importlib.import_module(mod), name)
    assert _numpydoc_example(obj), f"{mod}.{name} has no Examples section with code"
    if inspect.isclass(obj) and obj.__module__.startswith("skmoby"):
        for attr, value in vars(obj).items():
            if not attr.startswith("_") and inspect.isfunction(value):
                assert inspect.getdoc(value), f"{mod}.{name}.{attr} has no docstring"
        for attr in USER_METHODS.get(name, []):
            assert _numpydoc_example(getattr(obj, attr)), f"{name}.{attr} has no example"
