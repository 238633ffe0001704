"""Sphinx configuration of the skmoby documentation."""

import skmoby

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
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autodoc_default_options = {
    "members": True,
    "inherited-members": False,
    # scikit-learn generates these metadata-routing setters; their docstrings point into
    # scikit-learn's own documentation.
    "exclude-members": "set_fit_request, set_partial_fit_request, set_score_request, "
    "set_transform_request",
}
intersphinx_mapping = {}
exclude_patterns = ["_build", "generated/*.examples"]
html_theme = "pydata_sphinx_theme"
html_static_path = ["_static"]
html_title = "skmoby"
nitpicky = False
