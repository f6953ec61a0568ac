import numpy as np
import pytest
import torch

from latent_atlas.data.dataset import validation_split
from latent_atlas.errors import AtlasError
from latent_atlas.training import load_run, train
from latent_atlas.training.history import HISTORY_FIELDS, read_history

from .conftest import tiny_model_config, tiny_train_config


def _train(dataset, data_path, run_dir, **train_overrides):
    return train(dataset, data_path, tiny_model_config(kind="vae"), tiny_train_config(**train_overrides), run_dir,
                 progress=False)


def test_run_folder_contents(trained_runs):
    run = trained_runs["vae"]
    for name in ("config.json", "model.safetensors", "history.csv", "metrics.json"):
        assert (run.path / name).is_file()
    assert run.config["data"]["content_hash"] == run.load_dataset().content_hash
    assert run.model_config.image_shape == (12, 12)
    rows = read_history(run.path / "history.csv")
    assert tuple(rows[0]) == HISTORY_FIELDS and len(rows) == 2
    assert run.metrics()["training"]["epochs_run"] == 2


def test_same_seed_gives_identical_weights(tmp_path, tiny_dataset, tiny_dataset_file):
    a = _train(tiny_dataset, tiny_dataset_file, tmp_path / "a").run
    b = _train(tiny_dataset, tiny_dataset_file, tmp_path / "b").run
    c = _train(tiny_dataset, tiny_dataset_file, tmp_path / "c", seed=1).run
    assert (a.path / "model.safetensors").read_bytes() == (b.path / "model.safetensors").read_bytes()
    assert (a.path / "model.safetensors").read_bytes() != (c.path / "model.safetensors").read_bytes()


def test_patience_counts_min_delta_but_the_lowest_loss_is_kept(tmp_path, tiny_dataset, tiny_dataset_file):
    # No drop reaches min_delta after the first epoch, so patience 2 stops after epoch 3; the weights kept are
    # still those of the lowest held-out loss, not the first epoch's.
    result = _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", epochs=10, scheduler="none", min_delta=1e6,
                    early_stopping_patience=2)
    val = [r["val_loss"] for r in read_history(result.run.path / "history.csv")]
    assert result.epochs_run == 3 and result.stopped_early
    assert min(val) < val[0] and result.best_epoch == int(np.argmin(val)) + 1 > 1
    assert result.best_val_loss == min(val)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, tiny_dataset, tiny_dataset_file):
    # The default schedule (one-cycle, stepped per batch) with channels_last weights and fused Adam, whose
    # restored moments must get their parameters' memory layout back.
    whole = _train(tiny_dataset, tiny_dataset_file, tmp_path / "whole", epochs=3).run
    partial = train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), tiny_train_config(epochs=3),
                    tmp_path / "parts", progress=False, max_new_epochs=1)
    assert partial.run is None and partial.epochs_run == 1
    assert not (tmp_path / "parts" / "model.safetensors").exists()
    resumed = train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), tiny_train_config(epochs=3),
                    tmp_path / "parts", progress=False, resume=True)
    assert resumed.epochs_run == 3
    assert (whole.path / "model.safetensors").read_bytes() == (resumed.run.path / "model.safetensors").read_bytes()
    def history(run):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in read_history(run.path / "history.csv")]

    assert history(whole) == history(resumed.run)


def test_run_stopped_before_its_first_checkpoint_resumes_exactly(tmp_path, tiny_dataset, tiny_dataset_file):
    whole = _train(tiny_dataset, tiny_dataset_file, tmp_path / "whole").run
    args = (tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), tiny_train_config(), tmp_path / "early")
    started = train(*args, progress=False, max_new_epochs=0)  # config.json written, no epoch finished
    assert started.epochs_run == 0 and not (tmp_path / "early" / "training_state.safetensors").exists()
    with pytest.raises(AtlasError, match="already holds a run"):
        train(*args, progress=False)
    resumed = train(*args, progress=False, resume=True)
    assert (resumed.run.path / "model.safetensors").read_bytes() == (whole.path / "model.safetensors").read_bytes()


def test_too_few_training_images_is_a_clear_error(tmp_path):
    from latent_atlas.config import FactorRange
    from latent_atlas.data import make_dataset

    from .conftest import tiny_data_config

    two = make_dataset(tiny_data_config(var_x=FactorRange(values=(1.0,)), var_y=FactorRange(values=(1.0,)),
                                        rho=FactorRange(values=(0.0, 0.5))))
    two.save(tmp_path / "two.npz")
    with pytest.raises(AtlasError, match="at least 2 images in the training split"):
        train(two, tmp_path / "two.npz", tiny_model_config(), tiny_train_config(), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_early_stopping_restores_the_best_epoch(tmp_path, tiny_dataset, tiny_dataset_file):
    # A learning rate this large makes the held-out loss bounce, so patience 1 stops early.
    result = _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", epochs=30, learning_rate=0.05,
                    early_stopping_patience=1, scheduler="none")
    rows = read_history(result.run.path / "history.csv")
    val = [r["val_loss"] for r in rows]
    assert result.stopped_early and len(rows) < 30
    assert result.best_epoch == int(np.argmin(val)) + 1
    assert result.best_val_loss == pytest.approx(min(val))
    # The saved weights are the best epoch's: re-evaluating them reproduces its held-out loss.
    from latent_atlas.models.inference import mean_loss
    from latent_atlas.training.trainer import images_tensor

    _, val_idx = validation_split(tiny_dataset.train_idx, 0.1, 0)
    loss = mean_loss(result.run.load_model(), images_tensor(tiny_dataset, val_idx, "cpu"), seed=0 + 2)
    assert loss["loss"] == pytest.approx(min(val), rel=1e-6)


def test_scheduler_lowers_the_learning_rate(tmp_path, tiny_dataset, tiny_dataset_file):
    result = _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", epochs=12, learning_rate=0.05,
                    scheduler="plateau", scheduler_patience=0, early_stopping_patience=12)
    rates = [r["learning_rate"] for r in read_history(result.run.path / "history.csv")]
    assert rates[0] == 0.05 and min(rates) < 0.05
    assert all(b <= a for a, b in zip(rates, rates[1:]))


def test_existing_run_is_not_overwritten(trained_runs, tiny_dataset):
    run = trained_runs["ae"]
    before = (run.path / "model.safetensors").read_bytes()
    with pytest.raises(AtlasError, match="already holds a run"):
        train(tiny_dataset, run.dataset_path, tiny_model_config(kind="ae"), tiny_train_config(), run.path,
              progress=False)
    assert (run.path / "model.safetensors").read_bytes() == before


def test_resume_refuses_other_settings(tmp_path, tiny_dataset, tiny_dataset_file):
    train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), tiny_train_config(epochs=3),
          tmp_path / "r", progress=False, max_new_epochs=1)
    with pytest.raises(AtlasError, match="config.json differs"):
        train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae", beta=2.0), tiny_train_config(epochs=3),
              tmp_path / "r", progress=False, resume=True)
    with pytest.raises(AtlasError, match="nothing to resume"):
        train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), tiny_train_config(),
              tmp_path / "empty", progress=False, resume=True)


def test_validation_split_is_held_out_of_training():
    fit, val = validation_split(np.arange(100, 200), 0.1, seed=0)
    assert len(val) == 10 and not set(fit) & set(val) and set(fit) | set(val) == set(range(100, 200))


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path, tiny_dataset, tiny_dataset_file):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path needs a machine without it")
    with pytest.raises(AtlasError, match="CUDA is not available"):
        _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", device="cuda")
    assert not (tmp_path / "r").exists()


def test_load_run_errors(tmp_path):
    with pytest.raises(AtlasError, match="run folder not found"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AtlasError, match="run config not found"):
        load_run(tmp_path / "empty")


def _torch_onecycle_epoch_rates(max_lr: float, epochs: int, steps: int, pct_start: float) -> list[float]:
    """The learning rate at the start of each epoch under torch's own OneCycleLR, stepped per batch."""
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=max_lr, total_steps=epochs * steps,
                                                   pct_start=pct_start, cycle_momentum=False)
    rates = []
    for _ in range(epochs):
        rates.append(reference.param_groups[0]["lr"])
        for _ in range(steps):
            reference.step()
            schedule.step()
    return rates


def test_onecycle_follows_torch_schedule_per_batch(tmp_path, tiny_dataset, tiny_dataset_file):
    config = dict(epochs=4, learning_rate=0.01, scheduler="onecycle", warmup_fraction=0.25, early_stopping_patience=9)
    result = _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", **config)
    rates = [r["learning_rate"] for r in read_history(result.run.path / "history.csv")]
    steps = -(-len(validation_split(tiny_dataset.train_idx, 0.1, 0)[0]) // 8)  # batches per epoch
    assert rates == pytest.approx(_torch_onecycle_epoch_rates(0.01, 4, steps, 0.25), rel=1e-12)
    assert rates[0] == pytest.approx(0.01 / 25) and max(rates) > rates[0] and rates[-1] < max(rates)


@pytest.mark.parametrize("scheduler", ["plateau", "none"])  # the default one-cycle: the test above
def test_other_schedules_resume_to_the_same_weights(tmp_path, tiny_dataset, tiny_dataset_file, scheduler):
    config = tiny_train_config(epochs=3, scheduler=scheduler, learning_rate=0.01, scheduler_patience=0)
    args = (tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), config)
    whole = train(*args, tmp_path / "whole", progress=False).run
    train(*args, tmp_path / "parts", progress=False, max_new_epochs=2)
    resumed = train(*args, tmp_path / "parts", progress=False, resume=True).run
    assert (whole.path / "model.safetensors").read_bytes() == (resumed.path / "model.safetensors").read_bytes()


def test_progress_without_a_terminal_prints_one_line_per_epoch(tmp_path, tiny_dataset, tiny_dataset_file):
    import subprocess
    import sys

    config = tmp_path / "tiny.toml"
    config.write_text("[model]\nchannels = [4, 8]\nhidden_dims = [16]\n[train]\nbatch_size = 4\n"
                      "early_stopping_patience = 9\n")
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr:
        subprocess.run([sys.executable, "-m", "latent_atlas.cli", "train", "--data", str(tiny_dataset_file),
                        "--model", "vae", "-o", str(tmp_path / "r"), "--epochs", "3", "--config", str(config)],
                       stderr=stderr, stdout=subprocess.DEVNULL, check=True)
    text = log.read_text()
    assert "\r" not in text and "\x1b" not in text
    assert [line.split()[:2] for line in text.splitlines()] == [["epoch", f"{e}/3"] for e in (1, 2, 3)]


def test_progress_bar_is_drawn_only_when_asked_or_on_a_terminal(tmp_path, tiny_dataset, tiny_dataset_file, capsys,
                                                                monkeypatch):
    from latent_atlas.training.trainer import show_bar

    args = (tiny_dataset, tiny_dataset_file, tiny_model_config(), tiny_train_config())
    train(*args, tmp_path / "bar", progress=True, progress_bar=True)
    assert "\r" in capsys.readouterr().err  # the test above would see a bar
    train(*args, tmp_path / "quiet", progress=False, progress_bar=True)
    assert capsys.readouterr().err == ""

    class Terminal:
        def isatty(self):
            return True

    assert show_bar(True, "auto") is False  # pytest's captured stderr is not a terminal
    monkeypatch.setattr("sys.stderr", Terminal())
    assert show_bar(True, "auto") is True and show_bar(True, False) is False and show_bar(False, "auto") is False
    with pytest.raises(AtlasError, match="progress_bar must be"):
        show_bar(True, "sometimes")


# -- the conditional VAE: the trainer feeds each batch its images' own conditions ---------------------------------


def _cvae_train(dataset, data_path, run_dir, condition="df", **kwargs):
    return train(dataset, data_path, tiny_model_config(kind="cvae", condition=condition), tiny_train_config(epochs=3),
                 run_dir, progress=False, **kwargs)


@pytest.mark.parametrize("condition", ["df", "rho"])
def test_cvae_batches_carry_their_own_images_conditions(tmp_path, tiny_t_dataset, condition):
    from latent_atlas.models.conditioning import encode_conditions
    from latent_atlas.training.trainer import Trainer

    path = tmp_path / "t.npz"
    tiny_t_dataset.save(path)
    trainer = Trainer(tiny_t_dataset, path, tiny_model_config(kind="cvae", condition=condition), tiny_train_config(),
                      tmp_path / "run", progress=False)
    # Each image of the tiny grid is unique, so an image finds its dataset row.
    rows = {image.tobytes(): i for i, image in enumerate(tiny_t_dataset.images)}
    expected = encode_conditions(condition, tiny_t_dataset.factor(condition), tiny_t_dataset.config)
    seen = []
    loss = trainer.model.loss

    def checking_loss(images, sample=True, generator=None, conditions=None):
        index = [rows[image.numpy().tobytes()] for image in images[:, 0].contiguous()]
        np.testing.assert_array_equal(conditions.numpy(), expected[index])
        seen.extend(index)
        return loss(images, sample=sample, generator=generator, conditions=conditions)

    trainer.model.loss = checking_loss
    trainer.fit(max_new_epochs=1)
    fit_idx, val_idx = validation_split(tiny_t_dataset.train_idx, trainer.train_config.validation_fraction, 0)
    assert sorted(seen[: len(fit_idx)]) == fit_idx.tolist()  # one training epoch: every fit image once
    assert sorted(seen[len(fit_idx):]) == val_idx.tolist()  # then the held-out loss, with its own conditions


def test_cvae_resumes_to_the_same_weights_and_checkpoints_round_trip(tmp_path, tiny_t_dataset):
    path = tmp_path / "t.npz"
    tiny_t_dataset.save(path)
    whole = _cvae_train(tiny_t_dataset, path, tmp_path / "whole").run
    assert _cvae_train(tiny_t_dataset, path, tmp_path / "parts", max_new_epochs=1).run is None
    resumed = _cvae_train(tiny_t_dataset, path, tmp_path / "parts", resume=True).run
    assert (whole.path / "model.safetensors").read_bytes() == (resumed.path / "model.safetensors").read_bytes()
    model = whole.load_model()
    assert model.kind == "cvae" and model.config.condition == "df" and whole.model_config == model.config


def test_cvae_condition_must_be_a_factor_of_the_data(tmp_path, tiny_dataset, tiny_dataset_file):
    with pytest.raises(AtlasError, match="unknown factor 'df'"):
        _cvae_train(tiny_dataset, tiny_dataset_file, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bfloat16_training_is_reproducible_resumable_and_recorded(tmp_path, tiny_dataset, tiny_dataset_file):
    whole = _train(tiny_dataset, tiny_dataset_file, tmp_path / "whole", epochs=3, precision="bfloat16").run
    again = _train(tiny_dataset, tiny_dataset_file, tmp_path / "again", epochs=3, precision="bfloat16").run
    float32 = _train(tiny_dataset, tiny_dataset_file, tmp_path / "float32", epochs=3).run
    weights = (whole.path / "model.safetensors").read_bytes()
    assert weights == (again.path / "model.safetensors").read_bytes()
    assert weights != (float32.path / "model.safetensors").read_bytes()  # the autocast did change the steps
    assert whole.train_config.precision == "bfloat16" and whole.config["train"]["precision"] == "bfloat16"
    assert "precision" not in float32.config["train"]
    assert all(p.dtype == torch.float32 for p in whole.load_model().parameters())

    config = tiny_train_config(epochs=3, precision="bfloat16")
    args = (tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), config, tmp_path / "parts")
    assert train(*args, progress=False, max_new_epochs=1).run is None
    resumed = train(*args, progress=False, resume=True).run
    assert (resumed.path / "model.safetensors").read_bytes() == weights
    with pytest.raises(AtlasError, match="differs from this run's settings"):  # not resumed in float32
        train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), tiny_train_config(epochs=3),
              tmp_path / "parts", progress=False, resume=True)


def test_adam_runs_with_the_configured_betas(tmp_path, tiny_dataset, tiny_dataset_file):
    from latent_atlas.training.trainer import Trainer

    for betas in [(0.9, 0.95), (0.5, 0.9)]:
        trainer = Trainer(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"),
                          tiny_train_config(adam_betas=betas), tmp_path / str(betas), progress=False)
        assert trainer.optimizer.param_groups[0]["betas"] == betas
    assert trainer.config["train"]["adam_betas"] == [0.5, 0.9]


def test_adam_runs_with_the_configured_weight_decay(tmp_path, tiny_dataset, tiny_dataset_file):
    from latent_atlas.training.trainer import Trainer

    for weight_decay in [0.0, 3e-4, 1e-2]:
        trainer = Trainer(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"),
                          tiny_train_config(weight_decay=weight_decay), tmp_path / str(weight_decay), progress=False)
        assert trainer.optimizer.param_groups[0]["weight_decay"] == weight_decay
        assert trainer.config["train"]["weight_decay"] == weight_decay  # saved runs state what they trained with


def test_a_run_saved_before_adam_betas_existed_reads_as_torchs_betas(tmp_path, tiny_dataset, tiny_dataset_file):
    import json

    # A run whose config.json predates the key trained with torch's (0.9, 0.999): it loads as such, and it
    # resumes under those betas but not under today's default.
    legacy = dict(adam_betas=(0.9, 0.999))
    train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), tiny_train_config(epochs=2, **legacy),
          tmp_path / "r", progress=False, max_new_epochs=1)
    config_path = tmp_path / "r" / "config.json"
    config = json.loads(config_path.read_text())
    del config["train"]["adam_betas"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(AtlasError, match="config.json differs"):
        train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"), tiny_train_config(epochs=2),
              tmp_path / "r", progress=False, resume=True)
    run = train(tiny_dataset, tiny_dataset_file, tiny_model_config(kind="vae"),
                tiny_train_config(epochs=2, **legacy), tmp_path / "r", progress=False, resume=True).run
    assert run.train_config.adam_betas == (0.9, 0.999)


@pytest.mark.parametrize("epochs, warms_up", [(3, False), (5, False), (10, True)])
def test_onecycle_with_a_warm_up_of_at_most_one_step_has_none(tmp_path, tiny_dataset, tiny_dataset_file, epochs,
                                                               warms_up):
    # One batch per epoch and warm-up 0.2: 0.6, 1 and 2 warm-up steps. torch's OneCycleLR divides by zero at
    # exactly one (the default 5 epochs of a dataset that fits in one batch); at one step or less there is no
    # step between the start and the peak, so the schedule descends from the peak from the first step.
    result = _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", epochs=epochs, batch_size=100_000,
                    learning_rate=0.01, warmup_fraction=0.2, early_stopping_patience=99)
    rates = [r["learning_rate"] for r in read_history(result.run.path / "history.csv")]
    expected = _torch_onecycle_epoch_rates(0.01, epochs, 1, 0.2 if warms_up else 0.0)
    assert rates == pytest.approx(expected, rel=1e-12)
    if warms_up:
        assert rates[0] == pytest.approx(0.01 / 25) and max(rates) == pytest.approx(0.01)
    else:
        assert rates[0] == max(rates) > 0.5 * 0.01 and rates == sorted(rates, reverse=True)
