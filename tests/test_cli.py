"""The CLI through its entry function: happy paths, and every kind of bad input giving one line and exit 2."""

import json
import subprocess
import sys

import pytest

from latent_atlas.cli import main
from latent_atlas.data import load_dataset

TINY_TOML = """
[data]
grid_size = 12
[data.var_x]
values = [0.3, 1.0, 2.5]
[data.var_y]
values = [0.3, 1.0, 2.5]
[data.rho]
values = [-0.6, 0.0, 0.3, 0.7]
[model]
channels = [4, 8]
hidden_dims = [16]
[train]
batch_size = 8
"""


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture()
def tiny_toml(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML)
    return path


def test_data_train_evaluate(capsys, tmp_path, tiny_toml):
    data = tmp_path / "g.npz"
    code, out, _ = run_cli(capsys, "data", "student-t", "-o", data, "--config", tiny_toml, "--seed", 3)
    assert code == 0 and "36 images 12x12" in out and "df" in out
    dataset = load_dataset(data)
    assert dataset.config.seed == 3 and dataset.config.kind == "student_t"

    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "--data", data, "--model", "ae", "-o", run, "--epochs", 2,
                           "--latent-dim", 2, "--config", tiny_toml, "--precision", "bfloat16", "-q")
    assert code == 0 and "images/s" in out
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["kind"] == "ae" and config["model"]["latent_dim"] == 2
    assert config["train"]["epochs"] == 2 and config["data"]["content_hash"] == dataset.content_hash
    assert config["train"]["precision"] == "bfloat16"

    code, out, _ = run_cli(capsys, "evaluate", run)
    assert code == 0 and "mean" in out and "p99" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['test_frobenius']['mean']:.4f}" in out


def test_invalid_config_value_leaves_the_output_untouched(capsys, tmp_path):
    out_file = tmp_path / "existing.npz"
    out_file.write_bytes(b"precious")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data.var_x]\nstart = -0.5\nstop = 1.0\nstep = 0.5\n")
    code, _, err = run_cli(capsys, "data", "gaussian", "-o", out_file, "--config", bad)
    assert_one_line_error(code, err, "data.var_x", "positive")
    assert out_file.read_bytes() == b"precious"
    assert sorted(tmp_path.iterdir()) == sorted([bad, out_file])  # no temporary file left behind


@pytest.mark.parametrize(
    "toml, needle",
    [
        ("[data]\ngrid_size = 1\n", "data.grid_size"),
        ("[data.rho]\nvalues = [0.2, 1.0]\n", "data.rho"),
        ("[data]\ndf_heavy = 0\n", "data.df_heavy"),
        ("[data.var_y]\nstart = 2.0\nstop = 1.0\nstep = 0.1\n", "empty range"),
        ("[data\n", "not valid TOML"),
        ("[dta]\ngrid_size = 16\n", "unknown table [dta]; settings go in the tables [data], [model]"),
        ("[data.var_x]\nstart = 0.1\nstop = 1e9\nstep = 1e-9\n", "more than the 100,000 allowed"),
        ("[data]\nvar_x = { start = 0.1, stop = 480.1, step = 0.1 }\nvar_y = { start = 0.1, stop = 480.1, step = 0.1 }\n",
         "would hold 437,"),
        ("epochs = 3\n", "unknown top-level key 'epochs'"),
    ],
)
def test_each_invalid_data_config_is_one_line(capsys, tmp_path, toml, needle):
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    code, _, err = run_cli(capsys, "data", "student-t", "-o", tmp_path / "x.npz", "--config", bad)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "x.npz").exists()


def test_missing_and_corrupt_dataset(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "missing.npz", "-o", tmp_path / "r")
    assert_one_line_error(code, err, "dataset not found")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    code, _, err = run_cli(capsys, "train", "--data", corrupt, "-o", tmp_path / "r")
    assert_one_line_error(code, err, "not a readable .npz")
    assert not (tmp_path / "r").exists()


def test_image_size_mismatch(capsys, tmp_path, tiny_dataset_file):
    config = tmp_path / "m.toml"
    config.write_text("[model]\nimage_shape = [36, 36]\n")
    code, _, err = run_cli(capsys, "train", "--data", tiny_dataset_file, "-o", tmp_path / "r", "--config", config)
    assert_one_line_error(code, err, "36x36", "12x12")
    assert not (tmp_path / "r").exists()


def test_too_small_images_for_the_architecture(capsys, tmp_path, tiny_dataset_file):
    config = tmp_path / "m.toml"
    config.write_text("[model]\nchannels = [4, 4, 4, 4]\nkernel_sizes = [3, 3, 3, 3]\nstrides = [1, 1, 1, 1]\n"
                      "pool_sizes = [2, 2, 2, 2]\n")
    code, _, err = run_cli(capsys, "train", "--data", tiny_dataset_file, "-o", tmp_path / "r", "--config", config)
    assert_one_line_error(code, err, "model.image_shape", "block 4")


def copy_run(run, destination):
    """A copy of a finished run whose config points at the original dataset."""
    import shutil

    shutil.copytree(run.path, destination)
    config = json.loads((destination / "config.json").read_text())
    config["data"]["path"] = str(run.dataset_path)
    (destination / "config.json").write_text(json.dumps(config))
    return destination


def test_corrupt_checkpoint(capsys, tmp_path, trained_runs):
    run = copy_run(trained_runs["vae"], tmp_path / "run")
    (run / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    code, _, err = run_cli(capsys, "evaluate", run)
    assert_one_line_error(code, err, "model.safetensors", "not a readable safetensors")


def test_checkpoint_of_the_wrong_architecture(capsys, tmp_path, trained_runs):
    import torch
    from safetensors.torch import save

    from latent_atlas.io import write_bytes

    run = copy_run(trained_runs["ae"], tmp_path / "run")
    write_bytes(run / "model.safetensors", save({"w": torch.zeros(2)}))
    code, _, err = run_cli(capsys, "evaluate", run)
    assert_one_line_error(code, err, "not a latent-atlas model checkpoint")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--data", "x.npz", "-o", "r", "--model", "gan"], "invalid choice"),
        (["train", "--data", "x.npz", "-o", "r", "--epochs", "0"], "positive integer"),
        (["train", "--data", "x.npz", "-o", "r", "--latent-dim", "two"], "positive integer"),
        (["data", "poisson", "-o", "x.npz"], "invalid choice"),
        (["train", "--data", "x.npz", "-o", ""], "expected a path, got an empty string"),
        (["train", "--data", "x.npz", "-o", "r", "--threads", "0"], "positive integer"),
        (["evaluate"], "required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, needle):
    with pytest.raises(SystemExit) as info:
        main(argv)
    _, err = capsys.readouterr()
    assert_one_line_error(info.value.code, err, needle)


def test_cuda_unavailable_is_a_clear_error(capsys, tmp_path, tiny_dataset_file):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path needs a machine without it")
    code, _, err = run_cli(capsys, "train", "--data", tiny_dataset_file, "-o", tmp_path / "r", "--device", "cuda")
    assert_one_line_error(code, err, "CUDA is not available")


def test_rerunning_train_into_a_finished_run_refuses(capsys, trained_runs):
    run = trained_runs["vae"]
    before = (run.path / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", "--data", run.dataset_path, "-o", run.path)
    assert_one_line_error(code, err, "already holds a run")
    assert (run.path / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("argv, needle", [
    (["data", "gaussian", "-o", "{file}/x.npz"], "a_file"),
    (["train", "--data", "{data}", "-o", "{file}"], "File exists"),
    (["train", "--data", "{data}", "-o", "{tmp}/r", "--seed", "99999999999999999999"], "train.seed"),
    (["train", "--data", "{data}", "-o", "{tmp}/r", "--model", "cvae"], "the cvae needs the factor"),
    (["train", "--data", "{data}", "-o", "{tmp}/r", "--condition", "rho"], "only the cvae takes a condition"),
    (["study", "-o", "{tmp}/s", "--config", "{toml}"], "model.hidden_dims"),
])
def test_unwritable_outputs_and_out_of_range_values_are_one_line(capsys, tmp_path, tiny_dataset_file, argv, needle):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nhidden_dims = []\n")
    values = {"file": a_file, "data": tiny_dataset_file, "tmp": tmp_path, "toml": toml}
    code, _, err = run_cli(capsys, *(arg.format(**values) for arg in argv))
    assert_one_line_error(code, err, needle)
    assert a_file.read_text() == "not a folder"


def test_study_refuses_a_one_dimensional_latent_space(capsys, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nlatent_dim = 1\n")
    code, _, err = run_cli(capsys, "study", "-o", tmp_path / "s", "--config", toml)
    assert_one_line_error(code, err, "latent_dim", "at least 2")
    assert not (tmp_path / "s").exists()


def test_console_script_is_installed(tmp_path):
    result = subprocess.run([sys.executable, "-m", "latent_atlas.cli", "data", "gaussian", "-o", tmp_path / "g.npz",
                             "--seed", "-1"], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "latent_atlas.cli", "train", "--help"], capture_output=True,
                               text=True).stdout
    assert "--resume" in help_text and "--latent-dim" in help_text


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_weights(tmp_path):
    """A real SIGKILL mid-training, then --resume: the weights equal an uninterrupted run's."""
    import os
    import signal
    import time

    toml = tmp_path / "c.toml"
    toml.write_text("[data]\ngrid_size = 16\nsampling = \"random\"\nn_samples = 1500\n[model]\nhidden_dims = [64]\n"
                    "[train]\nepochs = 6\nearly_stopping_patience = 6\n")
    data = tmp_path / "d.npz"
    assert main(["data", "gaussian", "-o", str(data), "--config", str(toml)]) == 0
    common = ["--data", str(data), "--config", str(toml), "-q"]
    assert main(["train", *common, "-o", str(tmp_path / "whole")]) == 0

    command = [sys.executable, "-m", "latent_atlas.cli", "train", *common, "-o", str(tmp_path / "killed")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "training_state.safetensors"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # land inside a later epoch
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "model.safetensors").exists(), "the kill came after training finished"
    assert main(["train", *common, "-o", str(tmp_path / "killed"), "--resume"]) == 0
    whole = (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert (tmp_path / "killed" / "model.safetensors").read_bytes() == whole


def test_no_report_says_when_an_older_report_is_left_in_place(capsys, tmp_path, monkeypatch):
    import latent_atlas.study as study
    import latent_atlas.study.summary as summary

    monkeypatch.setattr(study, "run_study", lambda *args, **kwargs: None)  # the study itself is tested elsewhere
    monkeypatch.setattr(summary, "study_summary", lambda result: "summary")
    code, out, _ = run_cli(capsys, "study", "-o", tmp_path, "--no-report")
    assert code == 0 and "not redrawn" not in out
    (tmp_path / "report.html").write_text("<html></html>")
    code, out, _ = run_cli(capsys, "study", "-o", tmp_path, "--no-report")
    assert code == 0 and "report.html is from an earlier run and was not redrawn" in out


def test_train_help_states_the_config_defaults(capsys):
    from latent_atlas.config import TrainConfig

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert f"maximum number of epochs (default {TrainConfig().epochs})" in text
    assert f"batch size (default {TrainConfig().batch_size})" in text
