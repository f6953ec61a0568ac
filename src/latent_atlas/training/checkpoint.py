"""Safetensors checkpoints: tensors in the file body, everything else as JSON in its metadata. No pickle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from ..config import ModelConfig, build
from ..errors import AtlasError, ConfigError
from ..io import write_bytes
from ..models import Autoencoder, build_model
from ..models.layout import placed

MODEL_FORMAT = "latent-atlas-model/1"
STATE_FORMAT = "latent-atlas-training-state/1"
# safetensors writes its metadata map in hash order; one key holding sorted JSON keeps the bytes reproducible.
METADATA_KEY = "latent_atlas"


def _metadata(fields: dict[str, Any]) -> dict[str, str]:
    return {METADATA_KEY: json.dumps(fields, sort_keys=True)}


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by a reference, collecting the tensors by name."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu", copy=True).contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        items = [[key, _split_tensors(value, f"{prefix}.{key}", tensors)] for key, value in obj.items()]
        if all(isinstance(key, str) for key in obj):
            return dict(items)
        return {"__items__": items}  # keeps integer keys (optimizer state is keyed by parameter index)
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(value, f"{prefix}.{i}", tensors) for i, value in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__items__"}:
            return {key: _join_tensors(value, tensors) for key, value in obj["__items__"]}
        return {key: _join_tensors(value, tensors) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_join_tensors(value, tensors) for value in obj]
    return obj


def state_to_bytes(state: dict[str, Any]) -> bytes:
    """A nested dict of tensors and JSON values as one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split_tensors(state, "state", tensors)
    return save_safetensors_bytes(tensors, metadata=_metadata({"format": STATE_FORMAT, "state": skeleton}))


def _read_safetensors(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if not path.is_file():
        raise AtlasError(f"{what} not found: {path}")
    data = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(data)
        header_length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_length]).get("__metadata__") or {}
        metadata = json.loads(header.get(METADATA_KEY, "{}"))
    except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise AtlasError(f"{what} {path} is not a readable safetensors file ({exc})") from None
    return tensors, metadata


def state_from_file(path: Path) -> dict[str, Any]:
    tensors, metadata = _read_safetensors(path, "training state")
    if metadata.get("format") != STATE_FORMAT:
        raise AtlasError(f"{path} is not a latent-atlas training state")
    return _join_tensors(metadata["state"], tensors)


def save_model(path: str | Path, model: Autoencoder) -> None:
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    metadata = _metadata({"format": MODEL_FORMAT, "model_config": model.config.to_dict()})
    write_bytes(path, save_safetensors_bytes(tensors, metadata=metadata))


def load_model(path: str | Path, device: str = "cpu") -> Autoencoder:
    """Rebuild a model from its safetensors file alone (its config travels in the metadata)."""
    path = Path(path)
    tensors, metadata = _read_safetensors(path, "model checkpoint")
    if metadata.get("format") != MODEL_FORMAT:
        raise AtlasError(f"{path} is not a latent-atlas model checkpoint")
    try:
        config = build(ModelConfig, metadata["model_config"], section="model")
        model = build_model(config)
        model.load_state_dict(tensors)
    except (ConfigError, RuntimeError, KeyError, TypeError) as exc:
        raise AtlasError(f"model checkpoint {path} does not match its architecture ({exc})") from None
    return placed(model, device).eval()
