"""Atomic, pickle-free file writing and reading: JSON, NPZ, safetensors."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AtlasError

# A fixed timestamp for every member of an NPZ archive, so that the same arrays give the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # Created like any new file (mode 0666 less the umask), unlike mkstemp's 0600.
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AtlasError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AtlasError(f"{what} {path} is not valid JSON: {exc}") from None


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An uncompressed NPZ archive whose bytes depend only on the arrays (no timestamps, no pickles)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            array = np.asarray(array)
            if array.dtype == object:
                raise TypeError(f"array {name!r} has dtype object, which would need pickle")
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    write_bytes(path, npz_bytes(arrays))


def read_npz(path: str | os.PathLike, what: str = "file") -> dict[str, np.ndarray]:
    """Every array of an NPZ file, loaded eagerly with pickles refused."""
    path = Path(path)
    if not path.is_file():
        raise AtlasError(f"{what} not found: {path}")
    try:
        # numpy leaks the handle it opens when the archive is corrupt, so hand it one we close.
        with open(path, "rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # a .npy file: one array, no names
                raise AtlasError(f"{what} {path} is a single .npy array, not an .npz archive of named arrays "
                                 "(write one with numpy.savez)")
            with loaded as archive:
                return {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        # numpy calls any file it cannot place "pickled data"; only a pickle's own first byte says it is one
        with open(path, "rb") as handle:
            pickle_file = handle.read(1) == b"\x80"
        message = str(exc)
        if "Object arrays cannot be loaded" in message or pickle_file:
            reason = "it holds pickled Python objects, which latent-atlas never loads"
        elif "pickled" in message:
            reason = "neither a zip archive nor a .npy file"
        else:
            reason = message
        raise AtlasError(f"{what} {path} is not a readable .npz archive ({reason})") from None


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sha256_arrays(arrays: Mapping[str, np.ndarray]) -> str:
    """A content hash over names, dtypes, shapes and bytes, in key order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
