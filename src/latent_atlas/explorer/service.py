"""What the explorer serves, with no web code here.

``discover`` turns the folders named on the command line (run folders, or study and sweep folders holding
``runs/``) into a catalogue of ``RunEntry``: what each run's ``config.json`` says, read at startup and
nothing more. ``Explorer`` loads a run into a ``RunSession`` (model, dataset, codes, oracle) the first time
it is used, fits the map between two runs' latent spaces the first time they are compared
(``alignment.CodeAlignment``) and keeps both. It never writes into the folders it reads: a study's files
belong to the study.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.latents import LatentCodes, encode_dataset
from ..analysis.paths import LatentPath, isovariance_path
from ..analysis.projection import project
from ..analysis.traversals import angular_traversal, interpolate
from ..config import DataConfig, ModelConfig, build
from ..data import HeatmapDataset, load_dataset
from ..errors import AtlasError, ConfigError
from ..io import file_sha256, read_json
from ..models import UNCONDITIONAL_KINDS, Autoencoder
from ..models.inference import decode, encode
from ..oracle import HeatmapOracle
from ..training import Run, load_run
from ..training.run import CONFIG_FILE, LATENTS_FILE, METRICS_FILE, MODEL_FILE
from ..verdicts import Verdict
from .alignment import CodeAlignment, code_spacing
from .compass import STEP_ULPS, Compass, compass_from, stencil

VIEW_DIMENSIONS = 3
METRIC_KEYS = ("test_frobenius", "test_elbo")
RUNS_FOLDER = "runs"
STUDY_ORACLE_FOLDER = "oracle"
COMPASS_STEP_SPACINGS = 0.5  # default finite-difference step, in code spacings
MIN_COMPASS_STEP = 1e-3  # the smallest step a compass takes, as a fraction of the default
VERDICT_CHUNK = 512  # reconstructions per model-thread job when colouring the scatter by verdict


class RunUnavailable(AtlasError):
    """A listed run that cannot be served now: training unfinished, files missing or corrupt."""


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


# ---------- the catalogue: what config.json says, read at startup ----------


def safe_id(name: str) -> str:
    """A run id usable as one URL path segment: letters, digits and ``. _ + -`` (others become ``_``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "run"
    return "run" + cleaned if set(cleaned) == {"."} else cleaned


def dataset_size(config: DataConfig) -> int:
    """How many images the data config makes: the grid's combinations, or ``n_samples`` random draws."""
    if config.sampling != "grid":
        return int(config.n_samples)
    return int(np.prod([len(getattr(config, name).grid()) for name in ("var_x", "var_y", "rho")]))


def study_oracle_file(dataset_path: Path) -> Path | None:
    """``ROOT/oracle/<name>.json`` beside a study's ``ROOT/data/<name>.npz``, when the study wrote one."""
    if dataset_path.parent.name != "data":
        return None
    candidate = dataset_path.parent.parent / STUDY_ORACLE_FOLDER / f"{dataset_path.stem}.json"
    return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class RunEntry:
    """One run as its ``config.json`` describes it; nothing is loaded."""

    id: str
    path: Path
    collection: str  # the study or sweep folder it was found in ("" for a run folder named directly)
    dataset_kind: str
    model_kind: str
    seed: int
    beta: float
    latent_dim: int
    n_images: int
    dataset_path: Path
    dataset_hash: str
    oracle_path: Path | None

    @property
    def name(self) -> str:
        return self.path.name

    def ready(self) -> bool:
        return (self.path / MODEL_FILE).is_file()

    def metrics(self) -> dict[str, Any]:
        path = self.path / METRICS_FILE
        try:
            return read_json(path, what="metrics") if path.is_file() else {}
        except AtlasError:
            return {}

    def listing(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "collection": self.collection, "dataset_kind": self.dataset_kind,
                "dataset_hash": self.dataset_hash, "kind": self.model_kind, "seed": self.seed, "beta": self.beta,
                "latent_dim": self.latent_dim, "n_images": self.n_images, "ready": self.ready(),
                "metrics": metrics_summary(self.metrics())}


def read_entry(path: Path, run_id: str, collection: str) -> RunEntry:
    """The catalogue entry of the run folder ``path`` (AtlasError when its config.json is unusable)."""
    config = read_json(path / CONFIG_FILE, what="run config")
    try:
        model = build(ModelConfig, config["model"], section="model")
        data = build(DataConfig, config["data"]["config"], section="data")
        if model.kind not in UNCONDITIONAL_KINDS:
            raise AtlasError(f"{path.name} is a {model.kind}: the explorer decodes codes alone, and this model also "
                             f"needs its condition ({model.condition})")
        dataset_path = (path / config["data"]["path"]).resolve()
        return RunEntry(id=run_id, path=path, collection=collection, dataset_kind=data.kind, model_kind=model.kind,
                        seed=int(config["train"]["seed"]), beta=float(model.beta), latent_dim=int(model.latent_dim),
                        n_images=dataset_size(data), dataset_path=dataset_path,
                        dataset_hash=str(config["data"]["content_hash"]), oracle_path=study_oracle_file(dataset_path))
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise AtlasError(f"run config {path / CONFIG_FILE} is malformed ({exc})") from None


def run_folders(folder: Path) -> list[Path]:
    """The run folders (holding config.json) in a study or sweep folder's ``runs/``, or directly in ``folder``;
    not the hidden ones (``.<run>.training``: a new config's run still training beside the one it will replace)."""
    parent = folder / RUNS_FOLDER if (folder / RUNS_FOLDER).is_dir() else folder
    return sorted(child for child in parent.iterdir()
                  if not child.name.startswith(".") and (child / CONFIG_FILE).is_file())


def discover(folders: list[str | Path]) -> tuple[list[RunEntry], list[dict[str, str]]]:
    """Every run in the named folders, in order: (entries, skipped run folders with the reason)."""
    if not folders:
        raise AtlasError("name at least one run, study or sweep folder")
    entries: list[RunEntry] = []
    skipped: list[dict[str, str]] = []
    taken: set[str] = set()
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise AtlasError(f"run folder not found: {folder}")
        direct = (folder / CONFIG_FILE).is_file()
        found = [folder] if direct else run_folders(folder)
        if not found:
            raise AtlasError(f"{folder} is neither a run folder (no {CONFIG_FILE}) nor a study or sweep folder "
                             f"(no {RUNS_FOLDER}/ with run folders)")
        collection = "" if direct else str(folder)
        for path in found:
            base = safe_id(path.resolve().name)
            run_id, n = base, 1
            while run_id in taken:
                n += 1
                run_id = f"{base}-{n}"
            try:
                entries.append(read_entry(path, run_id, collection))
                taken.add(run_id)
            except AtlasError as exc:
                if direct:
                    raise
                skipped.append({"path": str(path), "reason": str(exc)})
    return entries, skipped


def default_pair(entries: list[RunEntry], named_directly: bool) -> tuple[str, str | None]:
    """The runs the page opens with: the first two named, or a study's first VAE and its AE twin (same data, seed
    and dimension, from the same folder when there is one)."""
    if named_directly or len(entries) == 1:
        return entries[0].id, entries[1].id if len(entries) > 1 else None
    pool = [e for e in entries if e.ready()] or entries
    pool = sorted(pool, key=lambda e: (len(e.name), e.name))
    first = next((e for e in pool if e.model_kind == "vae"), pool[0])
    same_data = sorted((e for e in pool if e is not first and e.dataset_hash == first.dataset_hash),
                       key=lambda e: e.collection != first.collection)  # stable: keeps the order above within each
    twin = next((e for e in same_data if e.model_kind != first.model_kind and e.seed == first.seed
                 and e.latent_dim == first.latent_dim), None)
    second = twin or (same_data[0] if same_data else None)
    return first.id, None if second is None else second.id


# ---------- a loaded run ----------


def stored_or_encoded_latents(run: Run, model: Autoencoder, dataset: HeatmapDataset) -> LatentCodes:
    """The run's ``latents.npz`` when it matches the weights and the dataset, else the codes encoded in memory."""
    model_hash = file_sha256(run.path / MODEL_FILE)
    path = run.path / LATENTS_FILE
    if path.is_file():
        try:
            stored = LatentCodes.load(path)
            if (stored.model_hash == model_hash and stored.dataset_hash == dataset.content_hash
                    and stored.codes.shape == (len(dataset), model.latent_dim)):
                return stored
        except AtlasError:
            pass
    return encode_dataset(model, dataset, model_hash=model_hash)


class RunSession:
    """One run loaded for exploring: every array it serves is computed here, once."""

    def __init__(self, entry: RunEntry, run: Run, model: Autoencoder, dataset: HeatmapDataset, latents: LatentCodes,
                 oracle: HeatmapOracle, oracle_source: str):
        self.entry = entry
        self.id = entry.id
        self.run = run
        self.model = model.eval()
        self.dataset = dataset
        self.latents = latents
        self.oracle = oracle
        self.oracle_source = oracle_source
        self.view, self.projected = fit_view(latents.codes)  # (N, 3)
        self.spacing = code_spacing(latents.codes)
        derived = ("var_diff",) if {"var_x", "var_y"} <= set(latents.factor_names) else ()
        self.colour_names = latents.factor_names + derived
        self.colours = np.column_stack([latents.factor(name) for name in self.colour_names])  # (N, K')
        self.reconstruction_verdict: Verdict | None = None  # filled by ``verdict_rows`` chunks, on demand
        self._verdict_parts: dict[int, Verdict] = {}

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def n_images(self) -> int:
        return len(self.dataset)

    @property
    def compass_step(self) -> float:
        return COMPASS_STEP_SPACINGS * self.spacing

    def info(self) -> dict[str, Any]:
        codes = self.latents.codes
        return {
            **self.entry.listing(),
            "n_codes": len(codes),
            "image_shape": list(self.dataset.image_shape),
            "extent": float(self.dataset.config.extent),
            "factor_names": list(self.latents.factor_names),
            "colour_names": list(self.colour_names),
            "recovered_factor_names": list(self.oracle.factor_names),
            "code_min": codes.min(axis=0).tolist(),
            "code_max": codes.max(axis=0).tolist(),
            "code_median": np.median(codes, axis=0).tolist(),
            "code_spacing": self.spacing,
            "compass_step": self.compass_step,
            "projection": {
                "method": self.view.method,
                "components": self.view.components.tolist(),
                "offset": self.view.offset.tolist(),
            },
            "oracle": {"source": self.oracle_source, "threshold": self.oracle.shape_threshold,
                       "family": self.oracle.family, "box": self.oracle.box.to_dict()},
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

    def compass_codes(self, code: np.ndarray, step: float | None) -> tuple[np.ndarray, float, str]:
        """The (2D + 1, D) finite-difference stencil around ``code``, the step taken and a note on it.

        The step is the one asked (default: half a code spacing), raised where it would measure noise rather than
        the decoder: to ``MIN_COMPASS_STEP`` of the default (the oracle fits factors to about 1e-7) and to
        ``STEP_ULPS`` float32 spacings of the code's largest coordinate (code +- step must survive the decoder's
        float32). The note says when it was raised ("" otherwise)."""
        code = self.check_codes(np.asarray(code)[None])[0]
        asked = self.compass_step if step is None else float(step)
        resolution = float(np.spacing(np.float32(np.abs(code).max())))
        taken = max(asked, MIN_COMPASS_STEP * self.compass_step, STEP_ULPS * resolution)
        note = "" if taken == asked else (
            f"the step was raised from {asked:.3g} to {taken:.3g}: a smaller one would measure the oracle's fit and "
            "float32 rounding, not the decoder")
        return stencil(code, taken), taken, note

    @staticmethod
    def compass(code: np.ndarray, step: float, decoded: Decoded, codes: np.ndarray) -> Compass:
        return compass_from(code, step, decoded.verdict, codes)

    def verdict_rows(self, start: int) -> None:
        """The oracle's verdict on the reconstructions (decoded codes) of images start..start + VERDICT_CHUNK;
        once every chunk is in, ``reconstruction_verdict`` holds all of them in dataset order."""
        if self.reconstruction_verdict is not None or start in self._verdict_parts:
            return
        self._verdict_parts[start] = self.decode(self.latents.codes[start : start + VERDICT_CHUNK]).verdict
        if sum(len(v) for v in self._verdict_parts.values()) == self.n_images:
            parts = [self._verdict_parts[k] for k in sorted(self._verdict_parts)]
            self.reconstruction_verdict = Verdict(
                parts[0].factor_names, np.concatenate([p.factors for p in parts]),
                np.concatenate([p.residual for p in parts]), np.concatenate([p.shape_residual for p in parts]),
                parts[0].shape_threshold, parts[0].box, np.concatenate([p.novelty for p in parts]),
                np.concatenate([p.nearest_index for p in parts]), np.concatenate([p.nearest_factors for p in parts]))
            self._verdict_parts = {}

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


# ---------- the explorer: catalogue, loaded runs, alignments ----------


class Explorer:
    """The catalogue of runs and whatever has been loaded from it so far.

    ``session`` and ``alignment`` load and fit on first use and must be called from one thread at a time (the
    app calls them on its model thread); ``loaded`` and the catalogue can be read from anywhere.
    """

    def __init__(self, entries: list[RunEntry], skipped: list[dict[str, str]] | None = None,
                 default: tuple[str, str | None] | None = None):
        if not entries:
            raise AtlasError("the explorer needs at least one run")
        self.entries = {entry.id: entry for entry in entries}
        self.skipped = list(skipped or [])
        self.default = default or default_pair(entries, named_directly=True)
        self._sessions: dict[str, RunSession] = {}
        self._datasets: dict[Path, HeatmapDataset] = {}
        self._oracles: dict[tuple[str, str], tuple[HeatmapOracle, str]] = {}
        self._alignments: dict[tuple[str, str], CodeAlignment] = {}

    @classmethod
    def from_folders(cls, folders: list[str | Path]) -> Explorer:
        """Run folders, and study or sweep folders (every run in their ``runs/``); nothing is loaded yet."""
        entries, skipped = discover(folders)
        named_directly = all((Path(f) / CONFIG_FILE).is_file() for f in folders)
        return cls(entries, skipped, default_pair(entries, named_directly))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def entry(self, run_id: str) -> RunEntry:
        if run_id not in self.entries:
            raise AtlasError(f"unknown run {run_id!r}; this explorer serves {len(self.entries)} runs (see /api/runs)")
        return self.entries[run_id]

    def loaded(self, run_id: str) -> RunSession | None:
        return self._sessions.get(run_id)

    def session(self, run_id: str) -> RunSession:
        """The run, loaded now if it has not been: model, dataset (shared by path), codes, oracle."""
        found = self._sessions.get(run_id)
        if found is not None:
            return found
        entry = self.entry(run_id)
        try:
            run = load_run(entry.path)
            dataset = self._dataset(entry)
            model = run.load_model()
            latents = stored_or_encoded_latents(run, model, dataset)
            oracle, source = self._oracle(entry, dataset)
        except RunUnavailable:
            raise
        except AtlasError as exc:
            raise RunUnavailable(f"run {run_id} cannot be loaded: {exc}") from None
        if len(dataset) != entry.n_images or model.latent_dim != entry.latent_dim:
            raise RunUnavailable(f"run {run_id} no longer matches its listing ({len(dataset)} images, latent dimension "
                                 f"{model.latent_dim}; listed {entry.n_images} and {entry.latent_dim})")
        session = RunSession(entry, run, model, dataset, latents, oracle, source)
        self._sessions[run_id] = session
        return session

    def _dataset(self, entry: RunEntry) -> HeatmapDataset:
        dataset = self._datasets.get(entry.dataset_path)
        if dataset is None:
            dataset = load_dataset(entry.dataset_path)
            self._datasets[entry.dataset_path] = dataset
        if dataset.content_hash != entry.dataset_hash:
            raise RunUnavailable(f"dataset {entry.dataset_path} is not the one run {entry.id} was trained on "
                                 "(content hash differs)")
        return dataset

    def _oracle(self, entry: RunEntry, dataset: HeatmapDataset) -> tuple[HeatmapOracle, str]:
        """One model-independent oracle per dataset: the study's shape threshold (oracle/<kind>.json) when the
        run comes from a study that fixed one, else the corruption benchmark's rule for the dataset's grid."""
        key = (dataset.content_hash, str(entry.oracle_path or ""))
        if key not in self._oracles:
            if entry.oracle_path is not None:
                settings = read_json(entry.oracle_path, what="oracle settings")
                try:
                    threshold = float(settings["shape_threshold"])
                except (KeyError, TypeError, ValueError):
                    raise RunUnavailable(f"{entry.oracle_path} holds no shape_threshold") from None
                oracle = HeatmapOracle.for_dataset(dataset, shape_threshold=threshold)
                origin = f"the corruption benchmark's threshold fixed by the study in {entry.oracle_path}"
            else:
                oracle = HeatmapOracle.for_dataset(dataset)
                origin = "the corruption benchmark's rule for this grid"
            source = (f"shape residual <= {oracle.shape_threshold:g} ({origin}) "
                      f"and factors inside the data's box: {oracle.box.describe()}")
            self._oracles[key] = oracle, source
        return self._oracles[key]

    def alignment(self, source: str, target: str) -> CodeAlignment:
        """The map from ``source``'s codes to ``target``'s, fitted on their shared training images (cached)."""
        key = (source, target)
        if key not in self._alignments:
            a, b = self.session(source), self.session(target)
            if a.dataset.content_hash != b.dataset.content_hash:
                raise AtlasError(f"runs {source} ({a.entry.dataset_kind}) and {target} ({b.entry.dataset_kind}) were "
                                 "trained on different datasets: they share no images to align them through")
            self._alignments[key] = CodeAlignment(seed=0).fit(a.latents.codes, b.latents.codes,
                                                              a.dataset.train_idx, a.dataset.test_idx)
        return self._alignments[key]

    def aligned(self, source: str, target: str) -> CodeAlignment | None:
        return self._alignments.get((source, target))

    def correspond(self, source: str, target: str, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, D_source) codes of ``source`` -> the corresponding (B, D_target) codes of ``target`` and each
        code's distance to ``source``'s nearest code in code spacings."""
        codes = self.session(source).check_codes(codes)
        alignment = self.alignment(source, target)
        return alignment.transform(codes), alignment.support(codes)
