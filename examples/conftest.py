"""Mark the tutorial notebooks, which nbmake runs as tests, and check their stored numbers.

nbmake executes each notebook top to bottom but does not look at what it prints, so a
stored output could go on showing an accuracy that the current code no longer gives.
Here every number printed by a code cell (standard output and the plain-text form of a
result, tables included) in the fresh run is compared with the same number in the stored
notebook, and the test fails when one drifts beyond the tolerance:

* a number between -1 and 1 written with a decimal point (an accuracy, a score, a share):
  ``DECIMAL_TOLERANCE`` = 0.05 absolute;
* any other number (counts, shapes, step counts, distances): ``RELATIVE_TOLERANCE`` = 10%
  of the stored value (so small integers must match exactly).

The tolerances leave room for what differs between machines: the thread count and the
CPU's vector instructions change the order of floating-point sums, so a fit drifts a
little from one machine to the next even with ``random_state`` set (notebook 1's test
accuracy, stored as 0.931, came out 0.911 and 0.930 in two re-runs on 2-core CPUs).
A cell whose numbers are not meant to be reproduced (wall-clock timings, per-class
counts of a few picks) carries the cell tag ``numbers-vary``: only how many numbers it
prints is compared.

``uv run pytest examples/NAME.ipynb --overwrite`` stores a fresh run instead of checking.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from unittest import mock

import pytest

DECIMAL_TOLERANCE = 0.05
RELATIVE_TOLERANCE = 0.10
VARY_TAG = "numbers-vary"

# Thousands separators ("1,740,000") belong to the number; "(1257, 8, 8)" is three.
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")  # object addresses change at every run


def pytest_collection_modifyitems(items):
    for item in items:
        if str(item.fspath).endswith(".ipynb"):
            item.add_marker(pytest.mark.notebook)
            item.add_marker(pytest.mark.slow)


def _printed(cell: dict) -> str:
    """What a code cell printed: its standard output and its results as plain text."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream" and out.get("name") == "stdout":
            parts.append("".join(out["text"]))
        elif out["output_type"] in ("execute_result", "display_data"):
            parts.append("".join(out.get("data", {}).get("text/plain", "")))
    return _ADDRESS.sub("", "\n".join(parts))


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(text)


def _close(stored: str, fresh: str) -> bool:
    a, b = float(stored.replace(",", "")), float(fresh.replace(",", ""))
    if "." in stored and abs(a) <= 1:
        return abs(a - b) <= DECIMAL_TOLERANCE
    return abs(a - b) <= RELATIVE_TOLERANCE * abs(a)


def drift(stored_nb: dict, fresh_nb: dict) -> list[str]:
    """The printed numbers of ``fresh_nb`` that are not those of ``stored_nb``, within
    the tolerances, one message per cell; empty when they agree."""
    stored_cells = [c for c in stored_nb["cells"] if c["cell_type"] == "code"]
    fresh_cells = [c for c in fresh_nb["cells"] if c["cell_type"] == "code"]
    if len(stored_cells) != len(fresh_cells):
        return [f"{len(fresh_cells)} code cells ran, the stored notebook has {len(stored_cells)}"]
    problems = []
    for i, (old, new) in enumerate(zip(stored_cells, fresh_cells, strict=True), start=1):
        before, after = _numbers(_printed(old)), _numbers(_printed(new))
        if len(before) != len(after):
            problems.append(
                f"code cell {i} printed {len(after)} numbers, the stored output "
                f"{len(before)}:\n  stored: {_printed(old)[:300]!r}\n"
                f"  now:    {_printed(new)[:300]!r}"
            )
            continue
        if VARY_TAG in old.get("metadata", {}).get("tags", []):
            continue
        off = [(a, b) for a, b in zip(before, after, strict=True) if not _close(a, b)]
        if off:
            pairs = ", ".join(f"{a} -> {b}" for a, b in off[:8])
            problems.append(f"code cell {i}: stored -> now: {pairs}")
    return problems


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """Run the notebook through nbmake, keeping the executed notebook it builds, and
    compare its printed numbers with the stored ones."""
    if not str(item.fspath).endswith(".ipynb") or item.config.option.overwrite:
        return (yield)
    from nbmake import pytest_items

    stored = json.loads(Path(item.fspath).read_text())
    runs = []
    execute = pytest_items.NotebookRun.execute

    def keep(self):
        runs.append(execute(self))
        return runs[-1]

    with mock.patch.object(pytest_items.NotebookRun, "execute", keep):
        result = yield
    if runs and runs[-1].error is None:
        problems = drift(stored, runs[-1].nb)
        if problems:
            pytest.fail(
                f"{Path(item.fspath).name}: the stored outputs are out of date (tolerance: "
                f"±{DECIMAL_TOLERANCE} for decimals in [-1, 1], ±{RELATIVE_TOLERANCE:.0%} "
                f"otherwise; see examples/conftest.py). Store a fresh run with `uv run "
                f"pytest {item.fspath} --overwrite -p no:randomly`.\n" + "\n".join(problems),
                pytrace=False,
            )
    return result
