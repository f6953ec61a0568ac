"""What the explorer serves, computed once per run at startup: no web code here.

A ``RunSession`` holds one run in memory (model in eval mode, dataset, latent codes, the dataset's
oracle, the 3-D view of the codes) and answers the questions the page asks: decode these codes, show
that image, encode this index, sample that path. ``Explorer`` is the set of sessions, by run id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.latents import LatentCodes, encode_dataset, run_latents
from ..analysis.paths import LatentPath, isovariance_path
from ..analysis.projection import project
from ..analysis.traversals import angular_traversal, interpolate
from ..data import HeatmapDataset
from ..errors import AtlasError
from ..io import file_sha256
from ..models import Autoencoder
from ..models.inference import decode, encode
from ..oracle import HeatmapOracle
from ..training import Run, load_run
from ..training.run import MODEL_FILE
from ..verdicts import Verdict

VIEW_DIMENSIONS = 3
METRIC_KEYS = ("test_frobenius", "test_elbo")


@dataclass(frozen=True)
class Decoded:
    images: np.ndarray  # (B, H, W) float32 in [0, 1], row 0 at y = -extent
    verdict: Verdict  # the oracle's verdict on each image (shape, range; novelty not computed)

    def rows(self, start: int, stop: int) -> Decoded:
        return Decoded(self.images[start:stop], self.verdict.subset(slice(start, stop)))


@dataclass(frozen=True)
class View:
    """The affine map from codes (N, D) to scatter coordinates (N, 3): ``codes @ components.T + offset``."""

    method: str
    components: np.ndarray  # (3, D)
    offset: np.ndarray  # (3,)

    def apply(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.float64) @ self.components.T + self.offset  # (N, 3)


def fit_view(codes: np.ndarray) -> tuple[View, np.ndarray]:
    """The codes' own axes when D <= 3 (zero-padded to 3 columns), else their first 3 principal components.

    Both views are affine, so the map is recovered exactly from ``project``'s output by least squares; the
    page uses it to place any point (a slider position, a path) in the same scatter. Returns it and (N, 3).
    """
    codes = np.asarray(codes, dtype=np.float64)  # (N, D)
    method = "axes" if codes.shape[1] <= VIEW_DIMENSIONS else "pca"
    projected = project(codes, method, VIEW_DIMENSIONS)  # (N, min(D, 3))
    projected = np.pad(projected, ((0, 0), (0, VIEW_DIMENSIONS - projected.shape[1])))  # (N, 3)
    design = np.column_stack([codes, np.ones(len(codes))])  # (N, D + 1)
    solution = np.linalg.lstsq(design, projected, rcond=None)[0]  # (D + 1, 3)
    return View(method=method, components=solution[:-1].T, offset=solution[-1]), projected


def dataset_oracles(datasets: list[HeatmapDataset]) -> dict[str, tuple[HeatmapOracle, str]]:
    """One oracle per dataset (by content hash), independent of any model: the factor box from the dataset's
    config and the shape threshold from the corruption benchmark's rule for its grid."""
    oracles = {}
    for dataset in datasets:
        if dataset.content_hash not in oracles:
            oracle = HeatmapOracle.for_dataset(dataset)
            source = (f"shape residual <= {oracle.shape_threshold:g} (the corruption benchmark's rule for this grid) "
                      f"and factors inside the data's box: {oracle.box.describe()}")
            oracles[dataset.content_hash] = oracle, source
    return oracles


def load_latents(run: Run, model: Autoencoder, dataset: HeatmapDataset) -> LatentCodes:
    """``run_latents``, or the codes encoded in memory when the run folder cannot be written to."""
    try:
        return run_latents(run, dataset=dataset, model=model)
    except OSError:
        return encode_dataset(model, dataset, model_hash=file_sha256(run.path / MODEL_FILE))


def metrics_summary(metrics: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """The scalar figures of ``metrics.json`` worth showing beside the run (non-finite ones as None)."""
    summary = {}
    for key in METRIC_KEYS:
        values = metrics.get(key)
        if isinstance(values, dict):
            summary[key] = {
                name: (float(v) if math.isfinite(v) else None)
                for name, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
    return summary


class RunSession:
    """One run loaded for exploring: every array it serves is computed here, once."""

    def __init__(self, run_id: str, run: Run, model: Autoencoder, dataset: HeatmapDataset, latents: LatentCodes,
                 oracle: HeatmapOracle, oracle_source: str):
        self.id = run_id
        self.run = run
        self.model = model.eval()
        self.dataset = dataset
        self.latents = latents
        self.oracle = oracle
        self.oracle_source = oracle_source
        self.view, self.projected = fit_view(latents.codes)  # (N, 3)
        derived = ("var_diff",) if {"var_x", "var_y"} <= set(latents.factor_names) else ()
        self.colour_names = latents.factor_names + derived
        self.colours = np.column_stack([latents.factor(name) for name in self.colour_names])  # (N, K')

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def n_images(self) -> int:
        return len(self.dataset)

    def info(self) -> dict[str, Any]:
        codes = self.latents.codes
        return {
            "id": self.id,
            "name": self.run.name,
            "kind": self.run.kind,
            "latent_dim": self.latent_dim,
            "n_codes": len(codes),
            "image_shape": list(self.dataset.image_shape),
            "extent": float(self.dataset.config.extent),
            "dataset_kind": self.dataset.config.kind,
            "factor_names": list(self.latents.factor_names),
            "colour_names": list(self.colour_names),
            "recovered_factor_names": list(self.oracle.factor_names),
            "code_min": codes.min(axis=0).tolist(),
            "code_max": codes.max(axis=0).tolist(),
            "code_median": np.median(codes, axis=0).tolist(),
            "projection": {
                "method": self.view.method,
                "components": self.view.components.tolist(),
                "offset": self.view.offset.tolist(),
            },
            "oracle": {"source": self.oracle_source, "threshold": self.oracle.shape_threshold,
                       "family": self.oracle.family, "box": self.oracle.box.to_dict()},
            "metrics": metrics_summary(self.run.metrics()),
        }

    def codes_page(self, offset: int, limit: int, decimals: int) -> dict[str, Any]:
        rows = slice(offset, min(offset + limit, self.n_images))
        return {
            "total": self.n_images,
            "offset": offset,
            "count": max(0, rows.stop - rows.start),
            "codes": np.round(self.latents.codes[rows], decimals).tolist(),
            "projected": np.round(self.projected[rows], decimals).tolist(),
            "colours": np.round(self.colours[rows], decimals).tolist(),
            "is_test": self.latents.is_test[rows].tolist(),
        }

    def check_index(self, index: int) -> int:
        if not 0 <= index < self.n_images:
            raise AtlasError(f"index {index} is outside 0..{self.n_images - 1} for run {self.id!r}")
        return index

    def image(self, index: int) -> dict[str, Any]:
        index = self.check_index(index)
        return {
            "index": index,
            "image": self.dataset.images[index],  # (H, W)
            "factors": dict(zip(self.latents.factor_names, self.latents.factors[index].tolist())),
            "is_test": bool(self.latents.is_test[index]),
            "code": self.latents.codes[index].tolist(),
        }

    def encode(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Encode dataset image ``index`` now: posterior mean (D,) and, for the VAE, log-variance (D,)."""
        index = self.check_index(index)
        mean, logvar = encode(self.model, self.dataset.images[index : index + 1])
        return mean[0], None if logvar is None else logvar[0]

    def check_codes(self, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=np.float32)
        if codes.ndim != 2 or codes.shape[1] != self.latent_dim:
            raise AtlasError(f"codes must have shape (B, {self.latent_dim}), got {codes.shape}")
        if not np.all(np.isfinite(codes)):
            raise AtlasError("codes contain NaN or infinite values")
        return codes

    def decode(self, codes: np.ndarray) -> Decoded:
        """(B, D) codes -> decoded images and the oracle's verdict on them (shape and range)."""
        images = decode(self.model, self.check_codes(codes))  # (B, H, W)
        return Decoded(images=images, verdict=self.oracle.verdict(images, novelty=False))

    def path(self, kind: str, **params: Any) -> LatentPath:
        """Latent points (n, D) along a line between two codes, an arc around a centre, or the isovariance path."""
        if kind == "line":
            points = interpolate(params["start"], params["end"], params["n_points"])
            return LatentPath("line", points, f"A straight line of {len(points)} points between two codes.")
        if kind == "angular":
            axes = tuple(params["axes"])
            points = angular_traversal(params["center"], axes=axes, radius=params["radius"],
                                       start_angle=params["start_angle"], end_angle=params["end_angle"],
                                       n_points=params["n_points"])
            return LatentPath("angular", points, f"An arc of radius {params['radius']:g} in the plane of latent axes "
                                                 f"{axes[0]} and {axes[1]}.")
        if kind == "isovariance":
            try:
                return isovariance_path(self.latents, tolerance=params["tolerance"], n_bins=params["n_bins"],
                                        n_points=params["n_points"], axis=params["axis"])
            except (ValueError, np.linalg.LinAlgError) as exc:  # a spline the chosen parameters leave unfittable
                raise AtlasError(f"cannot build the isovariance path with these parameters ({exc})") from None
        raise AtlasError(f"unknown path kind {kind!r}; choose line, angular or isovariance")


def run_ids(paths: list[Path]) -> list[str]:
    """Runs are named by their folder name; repeated names get a suffix (-2, -3, ...)."""
    ids: list[str] = []
    for path in paths:
        name = path.resolve().name or "run"
        candidate, n = name, 1
        while candidate in ids:
            n += 1
            candidate = f"{name}-{n}"
        ids.append(candidate)
    return ids


class Explorer:
    """The loaded runs, by id; with two runs, both share one latent dimension so one code means something to both."""

    def __init__(self, sessions: list[RunSession]):
        if not sessions or len({s.latent_dim for s in sessions}) > 1:
            raise AtlasError("the explorer needs one or more runs of one latent dimension")
        self.sessions = {s.id: s for s in sessions}

    @classmethod
    def load(cls, run_dirs: list[str | Path]) -> Explorer:
        """Load one or two run folders; runs trained on the same dataset file share it and its oracle."""
        paths = [Path(p) for p in run_dirs]
        if not 1 <= len(paths) <= 2:
            raise AtlasError(f"the explorer shows one run or compares two, got {len(paths)} run folders")
        runs = [load_run(path) for path in paths]
        dims = {run.model_config.latent_dim for run in runs}
        if len(dims) > 1:
            described = " and ".join(f"{run.path} (latent dimension {run.model_config.latent_dim})" for run in runs)
            raise AtlasError(f"runs must share a latent dimension to be compared: {described}")
        datasets: dict[Path, HeatmapDataset] = {}
        for run in runs:
            if run.dataset_path not in datasets:
                datasets[run.dataset_path] = run.load_dataset()
        loaded = {}
        for run, run_id in zip(runs, run_ids(paths)):
            dataset = datasets[run.dataset_path]
            if dataset.content_hash != run.config["data"]["content_hash"]:
                raise AtlasError(f"dataset {run.dataset_path} is not the one run {run.path} was trained on")
            loaded[run_id] = run, run.load_model(), dataset
        oracles = dataset_oracles([dataset for _, _, dataset in loaded.values()])
        return cls([RunSession(run_id, run, model, dataset, load_latents(run, model, dataset),
                               *oracles[dataset.content_hash]) for run_id, (run, model, dataset) in loaded.items()])

    @property
    def latent_dim(self) -> int:
        return next(iter(self.sessions.values())).latent_dim

    @property
    def max_images(self) -> int:
        return max(s.n_images for s in self.sessions.values())

    def __getitem__(self, run_id: str) -> RunSession:
        if run_id not in self.sessions:
            raise AtlasError(f"unknown run {run_id!r}; this explorer serves {', '.join(self.sessions)}")
        return self.sessions[run_id]
