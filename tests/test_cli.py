import json

import pytest

from skmoby import cli
from tests.experiment.conftest import tiny_run_args


def test_help_everywhere(capsys):
    for argv in (
        ["--help"],
        ["demo", "--help"],
        ["run", "--help"],
        ["resume", "--help"],
        ["plot", "--help"],
    ):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 0
    assert "preset" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--preset", "nope"], "invalid choice"),
        (["run", "--dataset", "digits", "--budget", "0"], "positive integer"),
        (["run", "--dataset", "digits", "--lr", "-1"], "positive number"),
        (["run", "--dataset", "digits", "--methods", "mobyv2al,magic"], "methods"),
        (["run"], "give --preset or --dataset"),
        ([], "required"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2  # bad input, as documented (1 is for failed jobs)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "foo"], "methods"),
        (["--methods", ","], "methods"),
        (["--lr", "inf"], "lr must be"),
        (["--pool-subset", "5"], "pool_subset"),
        (["--seed", "-1"], "seed must be in [0, "),
        (["--initial", "1000", "--budget", "1000", "--cycles", "3"], "exceeds the pool"),
        (["--callback", "foo"], "MODULE:NAME"),
    ],
)
def test_bad_input_exits_2_and_leaves_no_run_folder(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    argv = [
        "run",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (out / "config.json").exists()  # the folder is free for the next run


def test_a_run_refused_for_its_pool_leaves_the_folder_usable(tmp_path, capsys):
    out = tmp_path / "run"
    common = [
        "run",
        "--dataset",
        "digits",
        "--methods",
        "random",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert cli.main([*common, "--initial", "1000", "--budget", "1000", "--cycles", "3"]) == 2
    assert cli.main([*common, "--initial", "20", "--budget", "10", "--cycles", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["initial"] == 20


@pytest.mark.parametrize("device", ["tpu", "cuda:99"])
def test_demo_with_a_device_this_machine_lacks_exits_2(tmp_path, capsys, device):
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "config.json").write_text("{}")  # the previous demo: kept
    try:
        code = cli.main(["demo", "--device", device, "--out", str(tmp_path), "--quiet"])
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert "device" in err and "Traceback" not in err
    assert (tmp_path / "demo" / "config.json").exists()


def test_missing_run_folder(tmp_path, capsys):
    assert cli.main(["resume", str(tmp_path / "none")]) == 2
    assert cli.main(["plot", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and "results.csv not found" in err


def test_missing_dataset_files(tmp_path, capsys):
    code = cli.main(
        [
            "run",
            "--dataset",
            "cifar10",
            "--data-root",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "Put them here" in capsys.readouterr().err


def test_download_without_network_is_one_line_naming_the_files(tmp_path, capsys, monkeypatch):
    import socket
    import urllib.error
    import urllib.request

    def urlopen(*args, **kwargs):  # what urllib raises when the host cannot be resolved
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    code = cli.main(
        [
            "run",
            "--dataset",
            "fashionmnist",
            "--data-root",
            str(tmp_path),
            "--download",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "could not download FashionMNIST" in err and "train-images-idx3-ubyte.gz" in err


def test_run_resume_plot_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "run",
        "--dataset",
        "digits",
        "--methods",
        "random,coreset",
        "--backbone",
        "cnn",
        "--initial",
        "20",
        "--budget",
        "10",
        "--cycles",
        "2",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
    ]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "learning_curve.png" in text and "results.csv" in text
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["budget"] == 10 and cfg["methods"] == ["random", "coreset"]
    assert cli.main(["resume", str(out), "--quiet"]) == 0  # nothing left: no new rows
    assert cli.main(["plot", str(out)]) == 0
    assert (out / "learning_curve.svg").exists()


def test_callbacks_from_the_command_line(tmp_path, monkeypatch):
    (tmp_path / "mycallbacks.py").write_text(
        "from skorch.callbacks import Callback\n"
        "import os\n"
        "class Mark(Callback):\n"
        "    def __init__(self, name):\n"
        "        self.name = name\n"
        "    def on_train_end(self, net, **kwargs):\n"
        "        open(self.name, 'w').close()\n"
        "def mark(method, trial, cycle):\n"
        f"    return Mark(os.path.join({str(tmp_path)!r}, f'{{method}}-{{trial}}-{{cycle}}'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    argv = [
        "run",
        "--dataset",
        "digits",
        "--methods",
        "random",
        "--initial",
        "20",
        "--budget",
        "10",
        "--cycles",
        "2",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
        "--callback",
        "mycallbacks:mark",
        "--save-models",
    ]
    assert cli.main(argv) == 0
    assert (tmp_path / "random-0-0").exists() and (tmp_path / "random-0-1").exists()
    assert len(list((out / "models").glob("*.pkl"))) == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolon", "MODULE:NAME"),
        ("no_such_module_xyz:f", "cannot import"),
        ("skorch.callbacks:Nope", "has no 'Nope'"),
        ("math:pi", "not a skorch callback or a function"),
        ("collections:OrderedDict", "not a skorch callback or a function"),
    ],
)
def test_bad_callback_spec(spec, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--dataset", "digits", "--callback", spec])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_runs_one_job_per_cpu_and_one_on_a_gpu(monkeypatch):
    from skmoby import _commands, devices, threads
    from skmoby.experiment import PRESETS, ExperimentConfig

    cfg = ExperimentConfig(**{**PRESETS["demo"], "device": "cpu"})
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    assert _commands._demo_jobs(cfg) == 2
    monkeypatch.setattr(threads, "available_cpus", lambda: 64)  # capped at the run's jobs
    assert _commands._demo_jobs(cfg) == len(cfg.methods) * cfg.trials
    monkeypatch.setattr(devices, "cuda_count", lambda: 1)
    assert _commands._demo_jobs(ExperimentConfig(**{**PRESETS["demo"], "device": "auto"})) == 1
    with pytest.raises(SystemExit):
        cli.main(["demo", "--jobs", "0"])


def test_plot_of_a_run_without_finished_cycles(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(tiny_run_args(out)) == 0
    (out / "learning_curve.png").unlink()
    header = (out / "results.csv").read_text().splitlines(keepends=True)[0]
    (out / "results.csv").write_text(header)  # no cycle finished yet
    assert cli.main(["plot", str(out)]) == 2
    assert "no finished cycle yet" in capsys.readouterr().err
    assert not (out / "learning_curve.png").exists()


def test_the_resume_hint_only_for_an_unfinished_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(tiny_run_args(out)) == 0
    assert "skmoby resume" not in capsys.readouterr().out  # finished: nothing to resume
    lines = (out / "results.csv").read_text().splitlines(keepends=True)
    (out / "results.csv").write_text("".join(lines[:-1]))  # the last cycle still to run
    assert cli.main(["plot", str(out)]) == 0
    assert f"skmoby resume {out}" in capsys.readouterr().out


def test_a_worker_that_cannot_start_is_an_error_message_not_a_traceback(tmp_path, capsys):
    from skmoby import _commands
    from skmoby.experiment import WorkerStartError

    def start():
        raise WorkerStartError("a worker process (cpu) could not start:\nImportError: x")

    assert _commands._execute("run", tmp_path / "run", start) == 1
    err = capsys.readouterr().err
    assert err.startswith("skmoby run: error: a worker process (cpu) could not start")
