"""What skmoby 0.1.0.dev0 wrote still reads: a pickled classifier and a run folder.

The files in tests/fixtures/0.1.0.dev0/ were written by that version with
``make_fixtures.py`` beside them; the expected values are what it computed then.
"""

import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "0.1.0.dev0"


def test_old_pickle_loads_and_predicts_as_before():
    clf = pickle.loads((FIXTURES / "classifier.pkl").read_bytes())
    expected = np.load(FIXTURES / "classifier_expected.npz")
    np.testing.assert_allclose(
        clf.predict_proba(expected["X"]), expected["proba"], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        clf.transform(expected["X"]), expected["features"], rtol=1e-5, atol=1e-6
    )


def _expected_summary() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "run_expected_summary.csv", header=[0, 1], index_col=[0, 1])


def _same_table(summary: pd.DataFrame) -> None:
    expected = _expected_summary()
    got = summary.copy()
    got.columns = expected.columns  # the CSV round trip names the header levels differently
    pd.testing.assert_frame_equal(got, expected, check_names=False, check_dtype=False)


def test_old_run_folder_reads_to_the_same_table():
    from skmoby.experiment import load_results, summarize

    _same_table(summarize(load_results(FIXTURES / "run")))


def test_old_run_folder_resumes_its_lost_last_cycle_to_the_same_table(tmp_path):
    from skmoby.experiment import resume_experiment, summarize

    folder = tmp_path / "run"
    shutil.copytree(FIXTURES / "run", folder)
    rows = (folder / "results.csv").read_text().splitlines(keepends=True)
    (folder / "results.csv").write_text("".join(rows[:-1]))  # random's last cycle is lost
    results = resume_experiment(folder, progress=False, log=lambda _: None)
    _same_table(summarize(results))


@pytest.mark.parametrize(
    "path",
    [
        "skmoby.MoBYv2Classifier",
        "skmoby.classifier.MoBYv2Classifier",
        "skmoby.experiment.run_experiment",
        "skmoby.experiment.ExperimentConfig",
        "skmoby.query.coreset",
    ],
)
def test_public_import_paths_of_0_1_0_still_work(path):
    import importlib

    module, _, name = path.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
