"""Every script in benchmarks/ runs to the end at a tiny size.

The benchmarks are documented commands; nothing else executes them, so a script that no
longer runs (an API it uses changed, a code path only one approach takes) would stay
broken until someone tries to reproduce a number. Each script runs here as a user runs
it, in a fresh interpreter, with arguments that make it as small as it goes; the numbers
it prints at that size mean nothing, only that it ends cleanly and prints its table.

Starting an interpreter that imports torch and skmoby takes seconds by itself, and some
scripts start several (one per approach, per job or per setting), or train every
variant. Those that took more than about 20 s on a 2-core x86 CPU without a GPU, shared
with other work (the times are in the comments; there an interpreter alone took 15 s), are
marked ``slow``; coreset.py is not, as it is the cheapest run of the path that once
broke (one approach in a child interpreter).
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA: the script's --device cuda path"
)
SLOW = pytest.mark.slow

# script -> [(id, arguments, a line its output must contain, marks)]; "{tmp}" is a
# temporary folder. A script missing here fails test_every_script_is_covered.
RUNS = {
    "ablation_augment.py": [("cpu", ["--n", "200"], "blur probability", ())],  # 15 s
    "ablation_batchnorm.py": [
        (
            "cpu",
            ["--seeds", "2", "--epochs", "1"],  # 66 s
            "per view - concatenated",
            (SLOW,),
        )
    ],
    "augment_views.py": [
        (
            "cpu",
            ["--draws", "1", "--epochs", "1"],
            "views",  # 66 s
            (SLOW,),
        )
    ],
    "coreset.py": [
        # The approaches that need no compiler, each in its own child process, as the
        # script measures them; test_coreset_approaches_agree runs all of them in-process.
        (
            "cpu",
            [
                "--n",
                "300",
                "--m",
                "30",
                "--d",
                "8",
                "--b",
                "5",
                "--kinds",
                "clustered",
                "--only",
                "cdist",
            ],
            "same picks",
            (),
        ),  # 32 s: two interpreters
        (
            "cuda",
            [
                "--device",
                "cuda",
                "--n",
                "2000",
                "--m",
                "200",
                "--d",
                "16",
                "--b",
                "20",
                "--kinds",
                "clustered",
            ],
            "the bandwidth bound",
            (CUDA,),
        ),
    ],
    "coreset_backends.py": [
        (
            "cpu",
            ["--n", "500", "--m", "50", "--dims", "8", "--repeat", "1"],
            "torch/keops",
            (),
        ),  # 16 s
        (
            "cuda",
            ["--device", "cuda", "--n", "2000", "--m", "200", "--dims", "8", "--repeat", "1"],
            "torch/keops",
            (CUDA,),
        ),
    ],
    "coverage.py": [
        (
            "cpu",
            ["--n", "600", "--d", "8", "--labelled", "20", "--budget", "10", "--repeat", "1"],
            "probcover-auto",
            (SLOW,),
        )
    ],  # 4 children
    "gpu_parallel.py": [
        (
            "cpu",
            [
                "--device",
                "cpu",
                "--backbone",
                "cnn",
                "--n",
                "64",
                "--size",
                "8",
                "--epochs",
                "1",
                "--jobs",
                "1",
                "2",
            ],
            "vs_one_alone",
            (SLOW,),
        ),  # 91 s
        (
            "cuda",
            [
                "--device",
                "cuda",
                "--backbone",
                "cnn",
                "--n",
                "256",
                "--size",
                "8",
                "--epochs",
                "1",
                "--jobs",
                "1",
                "2",
            ],
            "vs_one_alone",
            (CUDA,),
        ),
    ],
    "joint_vs_supervised.py": [
        (
            "cpu",
            ["--seeds", "1", "--epochs", "1"],  # 55 s
            "supervised, same steps",
            (SLOW,),
        )
    ],
    "parallel_jobs.py": [
        (
            "cpu",
            ["--preset", "demo", "--trials", "2", "--cycles", "1", "--epochs", "1"],
            "identical results.csv",
            (SLOW,),
        )
    ],  # 169 s: four runs of the CLI, two with workers
    "shared_cpu.py": [
        (
            "cpu",
            ["--small", "--work", "fit,kcg", "--settings", "1-thread", "--timeout", "120"],
            "competitor / own alone",
            (SLOW,),
        )
    ],  # 122 s: four child interpreters next to a busy loop
    "train_step.py": [
        (
            "cpu",
            [
                "--device",
                "cpu",
                "--n",
                "64",
                "--epochs",
                "1",
                "--batch-size",
                "32",
                "--queue",
                "64",
                "--workers",
                "0",
            ],
            "x net",
            (SLOW,),
        ),  # 25 s
        (
            "cuda",
            [
                "--device",
                "cuda",
                "--n",
                "256",
                "--epochs",
                "1",
                "--batch-size",
                "64",
                "--queue",
                "256",
                "--workers",
                "0",
            ],
            "x net",
            (CUDA,),
        ),
    ],
    # ablation.py and selection_stats.py (which reads an ablation run) run in
    # test_ablation_then_selection_stats.
    "ablation.py": [],
    "selection_stats.py": [],
    # the scripts' shared module, not a script: every run above imports it
    "harness.py": [],
}


def run_script(name, args, timeout=300):
    """Run benchmarks/<name> like a user does; its stderr is shown if it fails."""
    cmd = [sys.executable, str(BENCHMARKS / name), *args]
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=BENCHMARKS.parent
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd[1:])} exited with status {done.returncode}:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-6000:]}",
            pytrace=False,
        )
    return done.stdout


def test_every_script_is_covered():
    assert sorted(p.name for p in BENCHMARKS.glob("*.py")) == sorted(RUNS)


@pytest.mark.parametrize(
    "name, args, expected",
    [
        pytest.param(name, args, expected, id=f"{name[:-3]}-{where}", marks=marks)
        for name, runs in RUNS.items()
        for where, args, expected, marks in runs
    ],
)
def test_script_runs_at_a_tiny_size(name, args, expected, tmp_path):
    out = run_script(name, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert expected in out


@pytest.mark.slow  # 63 s
def test_ablation_then_selection_stats(tmp_path):
    # Two variants, one of which swaps the selection strategy, with as many unlabelled
    # images as labelled ones (the demo preset trains on the whole pool).
    out = tmp_path / "ablation"
    text = run_script(
        "ablation.py",
        [
            "--dataset",
            "digits",
            "--preset",
            "demo",
            "--variants",
            "random,weak-features",
            "--trials",
            "1",
            "--cycles",
            "2",
            "--epochs",
            "1",
            "--unlabeled",
            "random",
            "--pool-subset",
            "200",
            "--split",
            "val",
            "--n-val",
            "300",
            "--out",
            str(out),
        ],
    )
    assert "Paired difference to random" in text
    assert (out / "ablation.png").is_file() and (out / "summary.csv").is_file()
    text = run_script("selection_stats.py", ["--out", str(out), "--k", "3"])
    assert "knn_disagree" in text and (out / "selection_stats.csv").is_file()


def _load(name, monkeypatch):
    """benchmarks/<name> as a module, importing ``harness`` as the script does when run."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / name)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_coreset_approaches_agree(monkeypatch):
    """Every CPU approach of benchmarks/coreset.py, in this process (the script runs each
    in a child process, seconds apiece); KeOps only where it compiles."""
    from skmoby.query import kcenter

    coreset = _load("coreset.py", monkeypatch)
    x = coreset.make_features("clustered", 330, 8)
    approaches = [
        a for a in coreset.CPU_APPROACHES if "keops" not in a or kcenter.keops_available("cpu")
    ]
    picks = {a: coreset.run(a, x, 30, 5)[0] for a in approaches}
    for a in approaches:
        np.testing.assert_array_equal(picks[a], picks["authors"], err_msg=a)


def test_harness_table_and_timer(monkeypatch):
    harness = _load("harness.py", monkeypatch)
    cols = [
        harness.Column("name", 6, align="<"),
        harness.Column("s", 7, ".3f"),
        harness.Column("x ref", 7, ".2f"),
    ]
    text = harness.table(cols, [["ref", 2.0, 1.0], ["fast", 0.5, harness.ratio(2.0, 0.5)]])
    assert text.splitlines() == [
        "name        s  x ref",
        "ref     2.000   1.00",
        "fast    0.500   4.00",
    ]
    assert harness.table(cols[:1] + cols[2:], [["n/a", None]]).splitlines()[1] == "n/a         -"
    calls = []
    timing = harness.measure(lambda: calls.append(1), 3, warmup=2)
    assert len(calls) == 5 and len(timing.times) == 3
    assert timing.best <= timing.median
