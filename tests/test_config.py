import json

import numpy as np
import pytest
from pydantic import ValidationError

from latent_atlas.config import (
    DataConfig,
    FactorRange,
    ModelConfig,
    TrainConfig,
    build,
    load_toml,
    section,
)
from latent_atlas.errors import AtlasError, ConfigError


def test_default_grids_match_the_seed():
    config = DataConfig()
    np.testing.assert_allclose(config.var_x.grid(), np.arange(0.1, 5.0, 0.2))
    assert len(config.var_x.grid()) == 25
    rho = config.rho.grid()
    assert len(rho) == 19 and rho[0] == -0.95 and rho[-1] == 0.85
    # Rounded grid values: no 0.30000000000000004.
    assert 0.3 in config.var_x.grid().tolist()


@pytest.mark.parametrize(
    "values, field",
    [
        ({"var_x": {"start": 0.0, "stop": 1.0, "step": 0.5}}, "data.var_x"),
        ({"var_y": {"values": [-1.0, 2.0]}}, "data.var_y"),
        ({"rho": {"values": [0.5, 1.0]}}, "data.rho"),
        ({"rho": {"start": -1.2, "stop": 0.0, "step": 0.1}}, "data.rho"),
        ({"grid_size": 1}, "data.grid_size"),
        ({"var_x": {"start": 2.0, "stop": 1.0, "step": 0.1}}, "data.var_x"),
        ({"var_x": {"values": []}}, "data.var_x"),
        ({"df_heavy": 0}, "data.df_heavy"),
        ({"df_light": -3}, "data.df_light"),
        ({"extent": -1}, "data.extent"),
        ({"test_fraction": 1.0}, "data.test_fraction"),
        ({"sampling": "sobol"}, "data.sampling"),
        ({"unknown_key": 1}, "data.unknown_key"),
    ],
)
def test_invalid_data_config_names_the_field(values, field):
    with pytest.raises(ConfigError) as info:
        build(DataConfig, values, section="data")
    message = str(info.value)
    assert message.startswith("invalid config:")
    assert f"{field}:" in message
    assert "\n" not in message


def test_empty_range_message_says_empty():
    with pytest.raises(ConfigError, match="empty range"):
        build(DataConfig, {"var_x": {"start": 2.0, "stop": 1.0, "step": 0.1}}, section="data")


@pytest.mark.parametrize(
    "values, field",
    [
        ({"latent_dim": 0}, "model.latent_dim"),
        ({"kernel_sizes": [4, 3]}, "model.kernel_sizes"),
        ({"channels": [8]}, "model"),  # block lists of different lengths
        ({"beta": -1}, "model.beta"),
        ({"likelihood": "poisson"}, "model.likelihood"),
        ({"image_shape": [3, 3]}, "model.image_shape"),
    ],
)
def test_invalid_model_config_names_the_field(values, field):
    with pytest.raises(ConfigError, match=rf"{field}[.:]"):
        build(ModelConfig, values, section="model")


def test_model_config_rejects_a_dataset_of_another_size():
    config = ModelConfig(image_shape=(32, 32))
    with pytest.raises(ConfigError, match="expects 32x32 images but the dataset's are 36x36"):
        config.for_images((36, 36))


@pytest.mark.parametrize("cls", [DataConfig, ModelConfig, TrainConfig])
def test_configs_round_trip_through_json(cls):
    config = cls()
    restored = build(cls, json.loads(json.dumps(config.to_dict())))
    assert restored == config


def test_configs_are_frozen():
    with pytest.raises(ValidationError, match="frozen"):
        DataConfig().grid_size = 10


def test_factor_range_needs_one_form():
    with pytest.raises(Exception, match="either values or start/stop/step"):
        FactorRange(start=0.1, stop=1.0, step=0.1, values=(0.5,))
    with pytest.raises(Exception, match="needs start, stop and step"):
        FactorRange(start=0.1)


def test_toml_sections_load_and_override(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[data]\ngrid_size = 20\n[data.rho]\nvalues = [0.0, 0.5]\n[train]\nepochs = 3\n')
    document = load_toml(path)
    config = build(DataConfig, section(document, "data"), section="data", seed=7)
    assert config.grid_size == 20 and config.seed == 7
    np.testing.assert_array_equal(config.rho.grid(), [0.0, 0.5])
    assert build(TrainConfig, section(document, "train")).epochs == 3


def test_bad_toml_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[data\n")
    with pytest.raises(AtlasError, match="not valid TOML"):
        load_toml(path)
    with pytest.raises(AtlasError, match="config file not found"):
        load_toml(tmp_path / "missing.toml")


def test_study_tables_in_the_wrong_place_are_named():
    from latent_atlas.study.config import study_config_from

    with pytest.raises(AtlasError, match=r"put those settings in their own \[data\] table"):
        study_config_from({"study": {"data": {"grid_size": 8}}})
    with pytest.raises(AtlasError, match="study.sections must be a list"):
        study_config_from({"study": {"sections": "dimensions"}})


def test_training_precision_is_recorded_only_when_it_is_not_float32():
    # float32 configs serialise as before the key existed, so their run configs and task keys are unchanged.
    assert "precision" not in TrainConfig().to_dict()
    bf16 = TrainConfig(precision="bfloat16")
    assert bf16.to_dict()["precision"] == "bfloat16"
    assert build(TrainConfig, json.loads(json.dumps(bf16.to_dict()))) == bf16
    with pytest.raises(ConfigError, match="train.precision"):
        build(TrainConfig, {"precision": "float16"}, section="train")


@pytest.mark.parametrize("betas", [[0.9, 1.0], [-0.1, 0.95], [0.9, float("nan")], [0.9], [0.9, 0.95, 0.99]])
def test_adam_betas_outside_the_unit_interval_name_the_field(betas):
    with pytest.raises(ConfigError, match="train.adam_betas"):
        build(TrainConfig, {"adam_betas": betas}, section="train")


def test_adam_betas_read_from_toml_as_a_pair(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nadam_betas = [0.8, 0.99]\n")
    config = build(TrainConfig, section(load_toml(path), "train"), section="train")
    assert config.adam_betas == (0.8, 0.99)
    assert build(TrainConfig, json.loads(json.dumps(config.to_dict()))) == config
