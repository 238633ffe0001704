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
