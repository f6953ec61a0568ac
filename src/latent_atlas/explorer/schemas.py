"""The explorer API's request and response bodies (pydantic), as its OpenAPI schema shows them.

Request bodies are exact for each run: a run's routes take codes of its own latent dimension and image
indices of its own dataset, so every request the schema admits is one the run can answer. The models for a
dimension (or a dataset size) are built once and shared by every run that has it.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

MAX_PATH_POINTS = 64
MAX_PAGE = 20_000
CODE_BOUND = 1e4
ANGLE_BOUND = 100.0
STRICT = ConfigDict(extra="forbid", strict=True)  # no coercion: true is not 1, "1" is not a number


def whole_number(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer; strict validation would not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(low: int, high: int, **field: Any) -> Any:
    """An integer field in [low, high] that also takes 3.0 (bounds first, or they miss the JSON schema)."""
    return Annotated[int, Field(ge=low, le=high, **field), BeforeValidator(whole_number)]


def finite_or_none(values: Any) -> Any:
    """Nested lists of floats with NaN and infinities replaced by None (JSON has no such numbers)."""
    if isinstance(values, (list, tuple)):
        return [finite_or_none(v) for v in values]
    return values if values is None or math.isfinite(values) else None


Coordinate = Annotated[float, Field(ge=-CODE_BOUND, le=CODE_BOUND, allow_inf_nan=False)]
PositiveNumber = Annotated[float, Field(gt=0, le=CODE_BOUND, allow_inf_nan=False)]


def code_type(dim: int) -> Any:
    return Annotated[list[Coordinate], Field(min_length=dim, max_length=dim,
                                             description=f"A latent point: {dim} finite numbers.")]


# ---------- requests, one model per latent dimension / dataset size ----------


@lru_cache(maxsize=None)
def decode_request(dim: int, max_batch: int) -> type[BaseModel]:
    codes = Field(min_length=1, max_length=max_batch, description=f"1..{max_batch} latent points of dimension {dim}.")
    return create_model(f"DecodeRequest{dim}D", __config__=STRICT, codes=(list[code_type(dim)], codes))


@lru_cache(maxsize=None)
def encode_request(n_images: int) -> type[BaseModel]:
    return create_model(f"EncodeRequest{n_images}Images", __config__=STRICT,
                        index=(integer(0, n_images - 1, description="A dataset image index."), ...))


@lru_cache(maxsize=None)
def compass_request(dim: int) -> type[BaseModel]:
    return create_model(
        f"CompassRequest{dim}D", __config__=STRICT,
        code=(code_type(dim), ...),
        step=(PositiveNumber | None, Field(None, description="Finite-difference step along each latent axis "
                                                             "(default: half the run's code spacing).")))


@lru_cache(maxsize=None)
def correspond_request(dim: int, max_batch: int, run_ids: tuple[str, ...]) -> type[BaseModel]:
    return create_model(
        f"CorrespondRequest{dim}D", __config__=STRICT,
        target=(Literal[run_ids], Field(description="The run to decode the corresponding codes in.")),  # type: ignore
        codes=(list[code_type(dim)], Field(min_length=1, max_length=max_batch,
                                           description=f"1..{max_batch} latent points of this run (dimension {dim}).")))


@lru_cache(maxsize=None)
def path_request(dim: int) -> Any:
    Code = code_type(dim)
    Axis = integer(0, dim - 1, description="A latent axis index.")
    PathPoints = integer(2, MAX_PATH_POINTS)
    line = create_model(f"LinePath{dim}D", __config__=STRICT, kind=(Literal["line"], ...), start=(Code, ...),
                        end=(Code, ...), n_points=(PathPoints, 10))
    angular = create_model(
        f"AngularPath{dim}D", __config__=STRICT, kind=(Literal["angular"], ...), center=(Code, ...),
        axes=(Annotated[list[Axis], Field(min_length=2, max_length=2, json_schema_extra={"uniqueItems": True},
                                          description="Two distinct latent axes (the arc's plane).")], ...),
        radius=(PositiveNumber, 1.0),
        start_angle=(Annotated[float, Field(ge=-ANGLE_BOUND, le=ANGLE_BOUND, allow_inf_nan=False)], 0.0),
        end_angle=(Annotated[float, Field(ge=-ANGLE_BOUND, le=ANGLE_BOUND, allow_inf_nan=False)], 2 * math.pi),
        n_points=(PathPoints, 12))
    isovariance = create_model(
        f"IsovariancePath{dim}D", __config__=STRICT, kind=(Literal["isovariance"], ...),
        tolerance=(Annotated[PositiveNumber, Field(description="Largest |var_x - var_y| of a strip code.")], 0.3),
        n_bins=(integer(2, 100), 12), n_points=(PathPoints, 12),
        axis=(Axis | None, Field(None, description="The axis to walk along (default: the one carrying rho).")))
    kinds = (line, angular, isovariance) if dim >= 2 else (line, isovariance)
    return Annotated[Union[kinds], Field(discriminator="kind")]  # type: ignore[valid-type]


# ---------- responses ----------


class Problem(BaseModel):
    detail: str = Field(description="What is wrong with the request, in one line.")


class FactorBoxInfo(BaseModel):
    names: list[str]
    low: list[float | None] = Field(description="Smallest recovered value in range, per factor (null: none).")
    high: list[float | None] = Field(description="Largest recovered value in range, per factor (null: none).")
    data_low: list[float | None] = Field(description="The data's own smallest value, per factor.")
    data_high: list[float | None] = Field(description="The data's own largest value, per factor.")


class OracleInfo(BaseModel):
    source: str = Field(description="How validity is judged: the shape threshold (the corruption benchmark's, no "
                                    "model involved; a study's own when the run comes from one) and the data's box.")
    threshold: float | None = Field(description="Largest shape residual (||image - fitted|| / ||fitted||) still "
                                                "called a heatmap of the family.")
    family: str
    box: FactorBoxInfo = Field(description="The data's factor box with margins: in range means inside it.")


class Projection(BaseModel):
    method: Literal["axes", "pca"] = Field(description="axes: the first 3 latent axes; pca: 3 principal components.")
    components: list[list[float]] = Field(description="(3, D): scatter coordinates = components @ code + offset.")
    offset: list[float]


class RunListing(BaseModel):
    id: str = Field(description="The run's id in every other endpoint (its folder name, made URL-safe).")
    name: str = Field(description="The run folder's name.")
    collection: str = Field(description="The study or sweep folder it was found in; empty when named directly.")
    dataset_kind: str
    dataset_hash: str = Field(description="The dataset's content hash: runs can be aligned when theirs are equal.")
    kind: Literal["ae", "vae"]
    seed: int = Field(description="The training seed.")
    beta: float = Field(description="The KL weight (meaningless for the AE).")
    latent_dim: int
    n_images: int
    ready: bool = Field(description="Training has finished (the weights exist).")
    metrics: dict[str, dict[str, float | None]] = Field(description="Test-set figures from the run's metrics.json.")


class RunInfo(RunListing):
    n_codes: int
    image_shape: list[int]
    extent: float = Field(description="Images cover [-extent, extent] on both axes.")
    factor_names: list[str] = Field(description="The dataset's true factors.")
    colour_names: list[str] = Field(description="Columns of `colours` in the codes endpoint (factors and derived).")
    recovered_factor_names: list[str] = Field(description="The factors the oracle recovers from decoded images.")
    code_min: list[float]
    code_max: list[float]
    code_median: list[float]
    code_spacing: float = Field(description="Median distance from a code to its nearest other code.")
    compass_step: float = Field(description="The compass's default finite-difference step.")
    projection: Projection
    oracle: OracleInfo


class Skipped(BaseModel):
    path: str
    reason: str


class DefaultPair(BaseModel):
    a: str = Field(description="The run the page opens with.")
    b: str | None = Field(description="The run it compares with, if any.")


class Limits(BaseModel):
    max_batch: int = Field(description="Most codes in one decode or correspond request.")
    max_path_points: int
    max_body_bytes: int
    max_page: int = Field(description="Most rows in one page of codes or verdicts.")
    code_bound: float = Field(description="Every coordinate must lie in [-code_bound, code_bound].")


class RunsResponse(BaseModel):
    version: str
    image_encoding: Literal["uint8-base64"]
    limits: Limits
    runs: list[RunListing] = Field(description="Every run found, loaded or not (loading happens on first use).")
    skipped: list[Skipped] = Field(description="Run folders of a study or sweep whose config could not be read.")
    default: DefaultPair


class CodesPage(BaseModel):
    run: str
    total: int = Field(description="Codes in the run (one per dataset image, index = dataset index).")
    offset: int
    count: int
    codes: list[list[float]] = Field(description="(count, D) latent codes (posterior means for the VAE).")
    projected: list[list[float]] = Field(description="(count, 3) scatter coordinates.")
    colour_names: list[str]
    colours: list[list[float]] = Field(description="(count, len(colour_names)) true factors and derived values.")
    is_test: list[bool]


class VerdictsPage(BaseModel):
    run: str
    total: int
    offset: int
    count: int
    shape_ok: list[bool] = Field(description="(count,) the reconstruction (decoded code) is a heatmap of the family.")
    in_range: list[bool] = Field(description="(count,) its recovered factors lie inside the data's box.")
    valid: list[bool] = Field(description="(count,) both.")
    shape_residual: list[float | None]
    threshold: float


class DecodeResponse(BaseModel):
    run: str
    image_shape: list[int]
    image_encoding: Literal["uint8-base64"]
    images: list[str] = Field(description="One uint8-base64 image per code (see the API description).")
    factor_names: list[str]
    factors: list[list[float | None]] = Field(description="(B, K) factors of the nearest heatmap of the family.")
    residual: list[float | None] = Field(description="(B,) Frobenius distance to that heatmap.")
    shape_residual: list[float | None] = Field(description="(B,) residual / Frobenius norm of that heatmap.")
    shape_ok: list[bool] = Field(description="(B,) shape_residual <= threshold: a heatmap of the family.")
    in_range: list[bool] = Field(description="(B,) recovered factors inside the data's factor box.")
    valid: list[bool] | None = Field(description="(B,) in-distribution valid: shape_ok and in_range.")
    failure: list[Literal["", "shape", "range", "shape+range"]] = Field(
        description="(B,) which check fails: empty when valid.")
    threshold: float | None = Field(description="The shape threshold.")


class ImageResponse(BaseModel):
    run: str
    index: int
    image_shape: list[int]
    image_encoding: Literal["uint8-base64"]
    image: str
    factors: dict[str, float] = Field(description="The image's true factors.")
    is_test: bool
    code: list[float] = Field(description="The image's latent code.")


class EncodeResponse(BaseModel):
    run: str
    index: int
    code: list[float] = Field(description="Posterior mean (the AE's code).")
    logvar: list[float] | None = Field(description="Posterior log-variance for the VAE, null for the AE.")


class PathResponse(BaseModel):
    run: str
    kind: Literal["line", "angular", "isovariance"]
    description: str
    points: list[list[float]] = Field(description="(n, D) latent points along the path.")
    projected: list[list[float]] = Field(description="(n, 3) the same points in the scatter's coordinates.")
    decoded: DecodeResponse


class CompassResponse(BaseModel):
    run: str
    code: list[float]
    step: float = Field(description="The finite-difference step used along each latent axis.")
    factor_names: list[str]
    units: list[str] = Field(description="What each gradient row differentiates: log variances, rho, log df.")
    value: list[float | None] = Field(description="(K,) the recovered factors at the code, in those units.")
    gradient: list[list[float | None]] | None = Field(
        description="(K, D) d(unit) / d(latent axis) by central differences; null when some decode is not a heatmap.")
    status: Literal["ok", "range", "shape"] = Field(
        description="ok: all 2D + 1 decodes valid; range: all heatmaps, some factors outside the data's box; "
                    "shape: some decode is not a heatmap of the family (no gradient).")
    message: str
    shape_ok: list[bool] = Field(description="(2D + 1,) for the code, then +step and -step along each axis.")
    in_range: list[bool]
    threshold: float


class AlignmentScoreInfo(BaseModel):
    method: Literal["procrustes", "affine", "knn", "affine_knn"]
    r2: float = Field(description="Held-out R² (variance weighted over the target's coordinates).")
    median_error: float = Field(description="Median held-out distance to the true target code, in the target's "
                                            "code spacings.")
    p90_error: float
    n: int = Field(description="Held-out (test split) images.")


class AlignmentInfo(BaseModel):
    source: str
    target: str
    method: Literal["procrustes", "affine", "knn", "affine_knn"] = Field(
        description="The map chosen by validation R² on part of the training split.")
    description: str
    score: AlignmentScoreInfo = Field(description="The chosen map's error on the test split (fitted on the "
                                                  "training split).")
    candidates: list[AlignmentScoreInfo] = Field(description="Every candidate's test-split error.")
    selection: dict[str, float] = Field(description="Each candidate's validation R² (what chose the map).")
    n_train: int
    source_spacing: float = Field(description="The source run's median code spacing.")
    target_spacing: float = Field(description="The target run's median code spacing.")


class CorrespondResponse(BaseModel):
    run: str = Field(description="The source run.")
    target: str
    codes: list[list[float]] = Field(description="(B, D_target) the corresponding codes of the target run.")
    support: list[float] = Field(description="(B,) distance from each source code to the source's nearest data code, "
                                             "in source code spacings: beyond a few the map extrapolates.")
    alignment: AlignmentInfo
    decoded: DecodeResponse = Field(description="The target run's decodes of the corresponding codes.")
