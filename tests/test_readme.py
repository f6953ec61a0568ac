"""The README as printed: its Python example runs (with two epochs), its configuration block states the defaults."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert "TrainConfig()" in block
    monkeypatch.chdir(tmp_path)
    exec(compile(block.replace("TrainConfig()", "TrainConfig(epochs=2)"), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "'mean'" in out and (tmp_path / "runs" / "vae" / "model.safetensors").is_file()


def _as_toml_value(value):
    """A config attribute as TOML reads it back: tuples are arrays."""
    return [_as_toml_value(v) for v in value] if isinstance(value, (tuple, list)) else value


def test_readme_config_block_states_the_defaults():
    import tomllib

    from latent_atlas.config import ModelConfig, TrainConfig

    block = re.search(r"```toml\n(\[data\].*?)```", README.read_text(), re.S).group(1)
    tables = tomllib.loads(block)
    for section, defaults in (("model", ModelConfig()), ("train", TrainConfig())):
        assert tables[section], section
        for key, value in tables[section].items():
            assert _as_toml_value(getattr(defaults, key)) == value, f"README [{section}] {key} = {value!r}"
