"""The explorer's web layer: validate the request, call the service, serialise the answer. No logic of its own.

Images travel as ``uint8-base64``: each image is H*W bytes in row-major order, row 0 at y = -extent (draw
with the origin at the bottom), pixel value = byte / 255, base64-encoded.
"""

import base64
import functools
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..errors import AtlasError
from .batching import Batcher, ModelThread
from .service import Decoded, Explorer, RunSession

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1_000_000
MAX_PATH_POINTS = 64
MAX_PAGE = 20_000
CODE_BOUND = 1e4
ANGLE_BOUND = 100.0
IMAGE_ENCODING = "uint8-base64"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # Host header names (any port) of a loopback address


def plotly_js_path() -> Path:
    """plotly.js as bundled in the plotly Python package: the page never loads it from a CDN."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def encode_images(images: np.ndarray) -> list[str]:
    """(B, H, W) floats in [0, 1] -> one base64 string of H*W bytes per image."""
    quantised = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)  # (B, H, W)
    return [base64.b64encode(image.tobytes()).decode("ascii") for image in quantised]


class Problem(BaseModel):
    detail: str = Field(description="What is wrong with the request, in one line.")


class FactorBoxInfo(BaseModel):
    names: list[str]
    low: list[float | None] = Field(description="Smallest recovered value in range, per factor (null: none).")
    high: list[float | None] = Field(description="Largest recovered value in range, per factor (null: none).")
    data_low: list[float | None] = Field(description="The data's own smallest value, per factor.")
    data_high: list[float | None] = Field(description="The data's own largest value, per factor.")


class OracleInfo(BaseModel):
    source: str = Field(description="How validity is judged: the shape threshold (the corruption benchmark's rule "
                                    "for the dataset's grid, no model involved) and the data's factor box.")
    threshold: float | None = Field(description="Largest shape residual (||image - fitted|| / ||fitted||) still "
                                                "called a heatmap of the family.")
    family: str
    box: FactorBoxInfo = Field(description="The data's factor box with margins: in range means inside it.")


class Projection(BaseModel):
    method: Literal["axes", "pca"] = Field(description="axes: the first 3 latent axes; pca: 3 principal components.")
    components: list[list[float]] = Field(description="(3, D): scatter coordinates = components @ code + offset.")
    offset: list[float]


class RunInfo(BaseModel):
    id: str = Field(description="The run's id in every other endpoint: its folder name.")
    name: str
    kind: Literal["ae", "vae"]
    latent_dim: int
    n_codes: int
    image_shape: list[int]
    extent: float = Field(description="Images cover [-extent, extent] on both axes.")
    dataset_kind: str
    factor_names: list[str] = Field(description="The dataset's true factors.")
    colour_names: list[str] = Field(description="Columns of `colours` in the codes endpoint (factors and derived).")
    recovered_factor_names: list[str] = Field(description="The factors the oracle recovers from decoded images.")
    code_min: list[float]
    code_max: list[float]
    code_median: list[float]
    projection: Projection
    oracle: OracleInfo
    metrics: dict[str, dict[str, float | None]] = Field(description="Test-set figures from the run's metrics.json.")


class Limits(BaseModel):
    max_batch: int = Field(description="Most codes in one decode request.")
    max_path_points: int
    max_body_bytes: int
    max_page: int = Field(description="Most rows in one page of codes.")
    code_bound: float = Field(description="Every coordinate must lie in [-code_bound, code_bound].")


class RunsResponse(BaseModel):
    version: str
    image_encoding: Literal["uint8-base64"]
    limits: Limits
    runs: list[RunInfo]


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


class DecodeResponse(BaseModel):
    run: str
    image_shape: list[int]
    image_encoding: Literal["uint8-base64"]
    images: list[str] = Field(description="One uint8-base64 image per code (see the API description).")
    factor_names: list[str]
    factors: list[list[float]] = Field(description="(B, K) factors of the nearest heatmap of the family (the oracle's fit).")
    residual: list[float] = Field(description="(B,) Frobenius distance to that heatmap.")
    shape_residual: list[float] = Field(description="(B,) residual / Frobenius norm of that heatmap (scale-free).")
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


def decode_response(session: RunSession, decoded: Decoded) -> DecodeResponse:
    return DecodeResponse(
        run=session.id,
        image_shape=list(decoded.images.shape[1:]),
        image_encoding=IMAGE_ENCODING,
        images=encode_images(decoded.images),
        factor_names=list(session.oracle.factor_names),
        factors=decoded.verdict.factors.tolist(),
        residual=decoded.verdict.residual.tolist(),
        shape_residual=decoded.verdict.shape_residual.tolist(),
        shape_ok=decoded.verdict.shape_ok.tolist(),
        in_range=decoded.verdict.in_range.tolist(),
        valid=decoded.verdict.valid.tolist(),
        failure=decoded.verdict.failure.tolist(),
        threshold=decoded.verdict.shape_threshold,
    )


def whole_number(value: Any) -> Any:
    """JSON Schema counts 3.0 as an integer; strict validation would not."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def integer(low: int, high: int, **field: Any) -> Any:
    """An integer field in [low, high] that also takes 3.0 (bounds first, or they miss the JSON schema)."""
    return Annotated[int, Field(ge=low, le=high, **field), BeforeValidator(whole_number)]


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _message(error: dict[str, Any]) -> str:
    reason = (error.get("ctx") or {}).get("error")
    return f"{error.get('msg', '')}: {reason}" if isinstance(reason, str) else str(error.get("msg", ""))


async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field that failed; the offending input is not echoed (it may be huge, or NaN)."""
    errors = [{"loc": list(e.get("loc", ())), "msg": _message(e), "type": str(e.get("type", ""))} for e in exc.errors()]
    message = "; ".join(f"{_location(tuple(e['loc']))}: {e['msg']}" for e in errors[:5])
    return JSONResponse({"detail": errors, "message": message}, status_code=422)


async def atlas_problem(request: Request, exc: AtlasError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def internal_problem(request: Request, exc: Exception) -> JSONResponse:
    """500 for a bug; sent from outside every middleware, so it carries the security headers itself."""
    return JSONResponse({"detail": "internal server error"}, status_code=500, headers=SECURITY_HEADERS)


TOO_LARGE = f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes"


async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = TOO_LARGE if exc.status_code == 413 else exc.detail
    if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not read the body as JSON text
        detail = f"the request body is not readable JSON: {str(exc.__cause__)[:200]}"
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


class BodySizeLimit:
    """413 for a request body over the limit: at once when its Content-Length says so, else as soon as the
    bytes read pass the limit (a body sent in chunks, without a length)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            too_large = declared.isdigit()
            detail = TOO_LARGE if too_large else "the Content-Length header is not a number"
            await JSONResponse({"detail": detail}, status_code=413 if too_large else 400)(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413, TOO_LARGE)  # FastAPI answers it through http_problem
            return message

        await self.app(scope, counted_receive, send)


class SecurityHeaders:
    """Adds ``headers`` to every response that does not set them itself (page, static files, vendor, API, errors)."""

    def __init__(self, app: Any, headers: dict[str, str]):
        self.app = app
        self.headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                message = {**message, "headers": headers + [h for h in self.headers if h[0] not in present]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def trusted_hosts(host: str, address: str) -> tuple[str, ...] | None:
    """The Host header names to accept when serving on ``host`` (as the user named it), bound to IP ``address``:
    loopback names (and ``host`` itself) for a loopback address, against DNS rebinding; None (any) for an
    address the user chose to expose."""
    if not ipaddress.ip_address(address).is_loopback:
        return None
    name = host.lower()
    own = f"[{name}]" if ":" in name and not name.startswith("[") else name
    return LOOPBACK_HOSTS if own in LOOPBACK_HOSTS else (*LOOPBACK_HOSTS, own)


def create_app(run_dirs: list[str | Path], max_batch: int = 256,
               allowed_hosts: tuple[str, ...] | list[str] | None = None) -> FastAPI:
    """The explorer for one or two run folders (AtlasError when one cannot be loaded or they differ in dimension).

    Model work runs on one thread with the calling thread's torch intra-op thread count (``serve`` sets 1).
    ``allowed_hosts``: the Host header names (any port) to answer, others get 400; None answers any.
    """
    if not 1 <= max_batch <= 4096:
        raise AtlasError(f"max_batch must lie in 1..4096, got {max_batch}")
    return build_app(Explorer.load(run_dirs), max_batch, allowed_hosts)


def build_app(explorer: Explorer, max_batch: int = 256,
              allowed_hosts: tuple[str, ...] | list[str] | None = None) -> FastAPI:
    dim = explorer.latent_dim
    run_ids = tuple(explorer.sessions)
    Coordinate = Annotated[float, Field(ge=-CODE_BOUND, le=CODE_BOUND, allow_inf_nan=False)]
    Code = Annotated[list[Coordinate], Field(min_length=dim, max_length=dim,
                                             description=f"A latent point: {dim} finite numbers.")]
    Axis = integer(0, dim - 1, description="A latent axis index.")
    PathPoints = integer(2, MAX_PATH_POINTS)
    RunId = Literal[run_ids]  # type: ignore[valid-type]
    Index = integer(0, explorer.max_images - 1, description="A dataset image index.")
    strict = ConfigDict(extra="forbid", strict=True)  # no coercion: true is not 1, "1" is not a number

    class DecodeRequest(BaseModel):
        model_config = strict
        codes: list[Code] = Field(min_length=1, max_length=max_batch,
                                  description=f"1..{max_batch} latent points of dimension {dim}.")

    class EncodeRequest(BaseModel):
        model_config = strict
        index: Index

    class LinePath(BaseModel):
        model_config = strict
        kind: Literal["line"]
        start: Code
        end: Code
        n_points: PathPoints = 10

    class AngularPath(BaseModel):
        model_config = strict
        kind: Literal["angular"]
        center: Code
        axes: Annotated[list[Axis], Field(min_length=2, max_length=2, json_schema_extra={"uniqueItems": True},
                                          description="Two distinct latent axes (the arc's plane).")]
        radius: Annotated[float, Field(gt=0, le=CODE_BOUND, allow_inf_nan=False)] = 1.0
        start_angle: Annotated[float, Field(ge=-ANGLE_BOUND, le=ANGLE_BOUND, allow_inf_nan=False)] = 0.0
        end_angle: Annotated[float, Field(ge=-ANGLE_BOUND, le=ANGLE_BOUND, allow_inf_nan=False)] = 2 * np.pi
        n_points: PathPoints = 12

    class IsovariancePath(BaseModel):
        model_config = strict
        kind: Literal["isovariance"]
        tolerance: Annotated[float, Field(gt=0, le=CODE_BOUND, allow_inf_nan=False,
                                          description="Largest |var_x - var_y| of a strip code.")] = 0.3
        n_bins: integer(2, 100) = 12
        n_points: PathPoints = 12
        axis: Axis | None = Field(None, description="The axis to walk along (default: the one carrying rho).")

    PathRequest = Annotated[Union[LinePath, AngularPath, IsovariancePath], Field(discriminator="kind")]

    model_thread = ModelThread(torch.get_num_threads())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        model_thread.close()

    app = FastAPI(
        title="latent-atlas explorer",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's Swagger and ReDoc pages load scripts from a CDN; /openapi.json stays
        redoc_url=None,
        version=__version__,
        description=__doc__,
        exception_handlers={
            RequestValidationError: validation_problem,
            AtlasError: atlas_problem,
            StarletteHTTPException: http_problem,
            Exception: internal_problem,
        },
    )
    problems = {400: {"model": Problem, "description": "A body that is not JSON text, or a bad Content-Length."},
                413: {"model": Problem, "description": "Request body too large."},
                422: {"description": "Invalid input; the answer says what is wrong."}}
    batchers = {run_id: Batcher(session.decode, max_batch, model_thread)
                for run_id, session in explorer.sessions.items()}
    limits = Limits(max_batch=max_batch, max_path_points=MAX_PATH_POINTS, max_body_bytes=MAX_BODY_BYTES,
                    max_page=MAX_PAGE, code_bound=CODE_BOUND)

    @app.get("/api/runs", response_model=RunsResponse, responses=problems, tags=["runs"])
    def runs() -> RunsResponse:
        """The loaded runs (at most two, sharing a latent dimension) and the request limits."""
        return RunsResponse(version=__version__, image_encoding=IMAGE_ENCODING, limits=limits,
                            runs=[RunInfo(**s.info()) for s in explorer.sessions.values()])

    @app.get("/api/runs/{run}/codes", response_model=CodesPage, responses=problems, tags=["runs"])
    def codes(
        run: RunId,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
        decimals: Annotated[int, Query(ge=1, le=8, description="Rounding of every number.")] = 4,
    ) -> CodesPage:
        """One page of codes, scatter coordinates and true factors, in dataset order."""
        session = explorer[run]
        return CodesPage(run=run, colour_names=list(session.colour_names),
                         **session.codes_page(offset, limit, decimals))

    @app.get("/api/runs/{run}/images/{index}", response_model=ImageResponse, responses=problems, tags=["data"])
    def image(run: RunId, index: Index) -> ImageResponse:
        """A dataset image with its true factors and code (for hovering a point)."""
        session = explorer[run]
        found = session.image(index)
        return ImageResponse(run=run, image_shape=list(found["image"].shape), image_encoding=IMAGE_ENCODING,
                             image=encode_images(found["image"][None])[0],
                             **{k: found[k] for k in ("index", "factors", "is_test", "code")})

    @app.post("/api/runs/{run}/encode", response_model=EncodeResponse, responses=problems, tags=["model"])
    async def encode(run: RunId, request: EncodeRequest) -> EncodeResponse:
        """Encode the dataset image at ``index`` with the run's encoder."""
        mean, logvar = await model_thread.run(explorer[run].encode, request.index)
        return EncodeResponse(run=run, index=request.index, code=mean.tolist(),
                              logvar=None if logvar is None else logvar.tolist())

    @app.post("/api/runs/{run}/decode", response_model=DecodeResponse, responses=problems, tags=["model"])
    async def decode(run: RunId, request: DecodeRequest) -> DecodeResponse:
        """Decode a batch of codes; the oracle fits a heatmap to each image and says whether it is valid: a heatmap
        of the family (shape) with factors inside the data's box (range)."""
        session = explorer[run]
        decoded = await batchers[run].submit(np.asarray(request.codes, dtype=np.float32))
        return decode_response(session, decoded)

    @app.post("/api/runs/{run}/paths", response_model=PathResponse, responses=problems, tags=["model"])
    async def paths(run: RunId, request: PathRequest) -> PathResponse:
        """Sample a path (a line between two codes, an arc around a centre, the isovariance path) and decode it."""
        session = explorer[run]
        path = await model_thread.run(functools.partial(session.path, **request.model_dump()))
        decoded = await batchers[run].submit(path.points.astype(np.float32))
        return PathResponse(run=run, kind=request.kind, description=path.description, points=path.points.tolist(),
                            projected=session.view.apply(path.points).tolist(),
                            decoded=decode_response(session, decoded))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(plotly_js_path(), media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.run_ids = run_ids
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    if allowed_hosts is not None:  # Starlette strips the port; a bracketed IPv6 name stays bracketed
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)
    app.add_middleware(SecurityHeaders, headers=SECURITY_HEADERS)  # added last: the outermost, sees every answer
    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one), or AtlasError saying why the address cannot be used.

    Listening before the address is printed means a client that reads it can connect at once.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        raise AtlasError(f"cannot listen on {host}:{port} ({exc})") from None
    return sock


def serve(run_dirs: list[str | Path], host: str = "127.0.0.1", port: int = 8000, torch_threads: int = 1) -> None:
    """Load the runs, print the address and serve until interrupted.

    On a loopback address only requests naming a loopback host are answered (``trusted_hosts``), so a web
    page whose domain is rebound to 127.0.0.1 cannot read the API; on any other address every host is.

    Torch gets ``torch_threads`` intra-op threads (1: on a small, shared machine a second one costs more
    than it gains; see benchmarks/explorer_load.py).
    """
    import torch
    import uvicorn

    torch.set_num_threads(torch_threads)
    sock = listening_socket(host, port)  # first: a taken port fails before the runs are loaded
    with sock:
        bound_host, bound_port = sock.getsockname()[:2]
        app = create_app(run_dirs, allowed_hosts=trusted_hosts(host, bound_host))
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        print(f"latent-atlas explorer: http://{shown}:{bound_port}/  serving {', '.join(app.state.run_ids)}; "
              "Ctrl-C to stop", flush=True)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C, then re-raises it
            print("latent-atlas explorer: stopped", flush=True)
