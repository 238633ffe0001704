"""Sphinx configuration of the skmoby documentation."""

import shutil
from pathlib import Path

import skmoby

# The tutorial notebooks live in examples/ (where users open them); the docs render
# copies of them, with the outputs stored in the notebooks (plots included).
_HERE = Path(__file__).resolve().parent
_TUTORIALS = _HERE / "tutorials"
if _TUTORIALS.exists():
    shutil.rmtree(_TUTORIALS)
_TUTORIALS.mkdir()
for _nb in sorted((_HERE.parent / "examples").glob("*.ipynb")):
    shutil.copy2(_nb, _TUTORIALS / _nb.name)

project = "skmoby"
author = "skmoby developers"
copyright = "2026, skmoby developers"
release = skmoby.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_nb",
]
# Render the outputs stored in the notebooks; the test suite executes them (nbmake).
nb_execution_mode = "off"
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {
    "members": True,
    # Inherited members stay undocumented (autodoc's default). "inherited-members" is not
    # set here: a default would override the one _templates/autosummary/class.rst gives.
    # scikit-learn generates these metadata-routing setters; their docstrings point into
    # scikit-learn's own documentation.
    "exclude-members": "set_fit_request, set_partial_fit_request, set_score_request, "
    "set_transform_request",
}
# MoBYv2Classifier has its set-up, inference and pickling methods in bases of its own
# (skmoby/classifier/_setup.py, _inference.py, _persistence.py): its page documents
# their methods with its own, and not those it inherits from skorch or scikit-learn. The class
# template gives autodoc these bases as :inherited-members:, the classes to leave out.
_ESTIMATOR_MODULES = {
    "skmoby.classifier.classifier",
    "skmoby.classifier._setup",
    "skmoby.classifier._inference",
    "skmoby.classifier._persistence",
}
templates_path = ["_templates"]
autosummary_context = {
    "autodoc_inherited_members": {
        "skmoby.MoBYv2Classifier": ", ".join(
            cls.__name__
            for cls in skmoby.MoBYv2Classifier.__mro__[1:]
            if cls.__module__ not in _ESTIMATOR_MODULES
        ),
    },
}
intersphinx_mapping = {}
exclude_patterns = ["_build", "_templates", "generated/*.examples", "**/.ipynb_checkpoints"]
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = "skmoby"
nitpicky = False
