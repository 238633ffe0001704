"""The tutorial notebooks are stored executed, and the docs and README list them all.

nbmake executes every notebook as part of the test run (see pyproject.toml); these tests
check the committed files themselves, whose stored outputs (plots included) are what
the documentation renders.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))


def _cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_there_are_five_numbered_tutorials():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_executed_in_order_without_errors(path):
    cells = _cells(path)
    assert cells, "no code cells"
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name} is not stored as one clean top-to-bottom run (execution counts "
        f"{counts}); re-run it with `uv run pytest examples --overwrite`"
    )
    outputs = [o for c in cells for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no stored plot"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_a_title_and_uses_the_default_kernel(path):
    nb = json.loads(path.read_text())
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown"
    assert "".join(first["source"]).startswith("# ")
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_docs_and_readme_link_every_notebook():
    toc = (ROOT / "docs" / "tutorials.rst").read_text()
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert re.search(rf"^\s+tutorials/{re.escape(path.stem)}\s*$", toc, re.M), path.name
        assert f"examples/{path.name}" in readme, path.name


def _conftest():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "examples_conftest", ROOT / "examples" / "conftest.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nb(*printed, tags=()):
    return {
        "cells": [{"cell_type": "markdown", "source": ["# t"]}]
        + [
            {
                "cell_type": "code",
                "metadata": {"tags": list(tags)},
                "outputs": [{"output_type": "stream", "name": "stdout", "text": [text]}],
            }
            for text in printed
        ]
    }


def test_stored_numbers_are_compared_with_a_fresh_run_within_the_tolerance():
    drift = _conftest().drift
    stored = _nb("train (1257, 8, 8)", "test accuracy with 100 labels: 0.931", "steps: 1,740,000")
    assert (
        drift(
            stored,
            _nb("train (1257, 8, 8)", "test accuracy with 100 labels: 0.911", "steps: 1,740,000"),
        )
        == []
    )
    [problem] = drift(
        stored,
        _nb("train (1257, 8, 8)", "test accuracy with 100 labels: 0.850", "steps: 1,740,000"),
    )
    assert "code cell 2" in problem and "0.931 -> 0.850" in problem
    [problem] = drift(
        stored,
        _nb("train (1400, 8, 8)", "test accuracy with 100 labels: 0.931", "steps: 1,740,000"),
    )
    assert "1257 -> 1400" in problem
    [problem] = drift(
        stored,
        _nb("train (1257, 8, 8)", "accuracy with 100 labels: 0.93 (0.02)", "steps: 1,740,000"),
    )
    assert "printed 3 numbers" in problem


def test_a_cell_tagged_numbers_vary_only_keeps_its_shape():
    drift = _conftest().drift
    stored = _nb("fit took 0.52 s over 30 steps", tags=["numbers-vary"])
    assert drift(stored, _nb("fit took 3.10 s over 30 steps")) == []
    assert drift(stored, _nb("fit took 3.10 s")) != []
