"""The README's Python example runs as printed (with two epochs instead of the default twenty)."""

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
