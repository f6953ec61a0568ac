"""The explorer's web layer: validate the request, call the service, serialise the answer. No logic of its own.

Runs are served under ``/api/runs/<id>/``; each run's request bodies are exact for it (codes of its latent
dimension, indices of its dataset), so the OpenAPI schema lists each run's endpoints. Images travel as
``uint8-base64``: each image is H*W bytes in row-major order, row 0 at y = -extent (draw with the origin at
the bottom), pixel value = byte / 255, base64-encoded.
"""

import base64
import functools
import gc
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi import Path as FastAPIPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..errors import AtlasError
from .alignment import CodeAlignment
from .batching import Batcher, ModelThread
from .schemas import (
    CODE_BOUND,
    MAX_PAGE,
    MAX_PATH_POINTS,
    AlignmentInfo,
    AlignmentScoreInfo,
    CodesPage,
    CompassResponse,
    CorrespondResponse,
    DecodeResponse,
    DefaultPair,
    EncodeResponse,
    ImageResponse,
    Limits,
    PathResponse,
    Problem,
    RunInfo,
    RunListing,
    RunsResponse,
    Skipped,
    VerdictsPage,
    compass_request,
    correspond_request,
    decode_request,
    encode_request,
    finite_or_none,
    path_request,
)
from .service import VERDICT_CHUNK, Decoded, Explorer, RunEntry, RunSession, RunUnavailable
from .shortcut import JsonShortcut, Shortcut

STATIC_DIR = Path(__file__).parent / "static"
MAX_BODY_BYTES = 1_000_000
IMAGE_ENCODING = "uint8-base64"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
DECODE_RESPONSE = TypeAdapter(DecodeResponse)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # Host header names (any port) of a loopback address


def plotly_js_path() -> Path:
    """plotly.js as bundled in the plotly Python package: the page never loads it from a CDN."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def encode_images(images: np.ndarray) -> list[str]:
    """(B, H, W) floats in [0, 1] -> one base64 string of H*W bytes per image."""
    quantised = np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)  # (B, H, W)
    return [base64.b64encode(image.tobytes()).decode("ascii") for image in quantised]


@dataclass(frozen=True)
class AnsweredRows:
    """Rows ``start:stop`` of a batch of decodes, with the answer's columns as JSON-ready lists.

    The lists are made once per batch, on the model thread (``AnsweredRows.of``); each request then only slices
    them. Made per request on the event loop, a single-code answer's few dozen NumPy calls on one-row arrays
    cost the event loop about as much as the rest of the request, and every client of a batch waits for all of
    them (``benchmarks/explorer_load.py``).
    """

    batch: Decoded
    columns: dict[str, list]  # DecodeResponse's per-image fields, every row of the batch
    start: int
    stop: int

    @classmethod
    def of(cls, decoded: Decoded) -> "AnsweredRows":
        verdict = decoded.verdict
        columns = {"images": encode_images(decoded.images), "factors": finite_or_none(verdict.factors.tolist()),
                   "residual": finite_or_none(verdict.residual.tolist()),
                   "shape_residual": finite_or_none(verdict.shape_residual.tolist()),
                   "shape_ok": verdict.shape_ok.tolist(), "in_range": verdict.in_range.tolist(),
                   "valid": verdict.valid.tolist(), "failure": verdict.failure.tolist()}
        return cls(decoded, columns, 0, len(decoded.images))

    def rows(self, start: int, stop: int) -> "AnsweredRows":
        return AnsweredRows(self.batch, self.columns, self.start + start, self.start + stop)

    @property
    def decoded(self) -> Decoded:
        """The images and the oracle's verdict on these rows."""
        return self.batch.rows(self.start, self.stop)


def decode_response(session: RunSession, answered: AnsweredRows) -> DecodeResponse:
    return DecodeResponse(
        run=session.id,
        image_shape=list(answered.batch.images.shape[1:]),
        image_encoding=IMAGE_ENCODING,
        factor_names=list(session.oracle.factor_names),
        threshold=answered.batch.verdict.shape_threshold,
        **{name: column[answered.start : answered.stop] for name, column in answered.columns.items()},
    )


def alignment_info(source: str, target: str, alignment: CodeAlignment) -> AlignmentInfo:
    score = alignment.score_
    description = (f"{alignment.method_} map from {source}'s codes to {target}'s, fitted on the "
                   f"{alignment.n_train_} training images both encode; on the {score.n} test images: "
                   f"R² {score.r2:.3f}, median error {score.median_error:.2f} of {target}'s code spacings")
    return AlignmentInfo(source=source, target=target, method=alignment.method_, description=description,
                         score=AlignmentScoreInfo(**score.to_dict()),
                         candidates=[AlignmentScoreInfo(**s.to_dict()) for s in alignment.scores_.values()],
                         selection=alignment.selection_, n_train=alignment.n_train_,
                         source_spacing=alignment.source_spacing_, target_spacing=alignment.target_spacing_)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _message(error: dict[str, Any]) -> str:
    reason = (error.get("ctx") or {}).get("error")
    return f"{error.get('msg', '')}: {reason}" if isinstance(reason, str) else str(error.get("msg", ""))


async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field that failed; the offending input is not echoed (it may be huge, or NaN). A body sent
    with another content type than JSON is not read as JSON: the message says so rather than "not a dictionary"."""
    errors = [{"loc": list(e.get("loc", ())), "msg": _message(e), "type": str(e.get("type", ""))} for e in exc.errors()]
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method == "POST" and content_type != "application/json" and any(e["loc"] == ["body"] for e in errors):
        errors.insert(0, {"loc": ["header", "content-type"], "type": "content_type",
                          "msg": f"send the body as JSON with Content-Type: application/json (got "
                                 f"{content_type[:60] or 'none'})"})
    message = "; ".join(f"{_location(tuple(e['loc']))}: {e['msg']}" for e in errors[:5])
    return JSONResponse({"detail": errors, "message": message}, status_code=422)


async def atlas_problem(request: Request, exc: AtlasError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)


async def unavailable_problem(request: Request, exc: RunUnavailable) -> JSONResponse:
    """409: the run is listed but cannot be served now (training unfinished, files missing or corrupt)."""
    return JSONResponse({"detail": str(exc)}, status_code=409)


async def internal_problem(request: Request, exc: Exception) -> JSONResponse:
    """500 for a bug; sent from outside every middleware, so it carries the security headers itself."""
    return JSONResponse({"detail": "internal server error"}, status_code=500, headers=SECURITY_HEADERS)


API_DESCRIPTION = """The latent-atlas explorer's JSON API: every run the explorer serves (``/api/runs``), its codes,
images and verdicts, and decoding any point of its latent space with the oracle's verdict on the decode (shape,
range), paths, the factor compass and the alignment between two runs. Each run's endpoints are listed under
``/api/runs/<id>/``, with request bodies exact for it (codes of its latent dimension, indices of its dataset).
Bodies are JSON (``Content-Type: application/json``); invalid input is answered with a 4xx and a message."""

TOO_LARGE = f"the request body is larger than the limit of {MAX_BODY_BYTES} bytes"


def http_problem_for(run_ids: tuple[str, ...]) -> Any:
    async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = TOO_LARGE if exc.status_code == 413 else exc.detail
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI could not read the body as JSON text
            detail = f"the request body is not readable JSON: {str(exc.__cause__)[:200]}"
        parts = request.url.path.split("/")
        if exc.status_code == 404 and parts[1:3] == ["api", "runs"] and len(parts) > 3 and parts[3] not in run_ids:
            shown = parts[3][:80]
            detail = f"unknown run {shown!r}; this explorer serves {len(run_ids)} runs: see /api/runs"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    return http_problem


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


def create_app(folders: list[str | Path], max_batch: int = 256,
               allowed_hosts: tuple[str, ...] | list[str] | None = None, *, freeze_heap: bool = False) -> FastAPI:
    """The explorer for run folders and study or sweep folders (every run in their ``runs/``).

    Only the runs' config.json files are read here; a run is loaded when it is first used. Model work runs on
    one thread with the calling thread's torch intra-op thread count (``serve`` sets 1). ``allowed_hosts``:
    the Host header names (any port) to answer, others get 400; None answers any. ``freeze_heap``: after
    each run's load, move what is alive into the garbage collector's permanent generation (``serve`` does;
    see ``_load_and_freeze``).
    """
    if not 1 <= max_batch <= 4096:
        raise AtlasError(f"max_batch must lie in 1..4096, got {max_batch}")
    return build_app(Explorer.from_folders(folders), max_batch, allowed_hosts, freeze_heap=freeze_heap)


def _load_and_freeze(explorer: Explorer, run_id: str) -> RunSession:
    """Load a run, then move everything alive into the garbage collector's permanent generation.

    Loading (torch, the model, the dataset, the alignment's fit) leaves hundreds of thousands of long-lived
    objects, and each full collection walks them all: a pause of 50-350 ms, all concurrent requests held up,
    every few thousand decodes (measured with benchmarks/explorer_load.py). Frozen objects are never walked
    again; what requests allocate is collected as before.
    """
    session = explorer.session(run_id)
    gc.collect()
    gc.freeze()
    return session


class RunRoutes:
    """Adds one run's endpoints under /api/runs/<id>/, with request bodies exact for its dimension and dataset."""

    def __init__(self, app: FastAPI, explorer: Explorer, model_thread: ModelThread, batchers: dict[str, Batcher],
                 max_batch: int, freeze_heap: bool = False):
        self.app = app
        self.load = functools.partial(_load_and_freeze, explorer) if freeze_heap else explorer.session
        self.explorer = explorer
        self.thread = model_thread
        self.batchers = batchers
        self.max_batch = max_batch
        self.shortcuts: dict[str, Shortcut] = {}  # path -> the short way through the web stack (shortcut.py)
        self.problems = {400: {"model": Problem, "description": "A body that cannot be read (not text), or a bad "
                                                                "Content-Length."},
                         409: {"model": Problem, "description": "The run cannot be served now (training not "
                                                                "finished, files missing or corrupt)."},
                         413: {"model": Problem, "description": "Request body too large."},
                         422: {"description": "Invalid input, a body that is not valid JSON included; the answer "
                                               "says what is wrong."}}

    async def session(self, run_id: str) -> RunSession:
        """The run, loaded on the model thread the first time it is asked for."""
        found = self.explorer.loaded(run_id)
        return found if found is not None else await self.thread.run(self.load, run_id)

    def add(self, entry: RunEntry) -> None:
        run_id, prefix, tags = entry.id, f"/api/runs/{entry.id}", [f"run {entry.id}"]
        app, problems = self.app, self.problems
        DecodeRequest = decode_request(entry.latent_dim, self.max_batch)
        EncodeRequest = encode_request(entry.n_images)
        CompassRequest = compass_request(entry.latent_dim)
        CorrespondRequest = correspond_request(entry.latent_dim, self.max_batch, self.explorer.ids)
        PathRequest = path_request(entry.latent_dim)
        Index = Annotated[int, FastAPIPath(ge=0, le=entry.n_images - 1, description="A dataset image index.")]
        RunId = Literal[self.explorer.ids]  # type: ignore[valid-type]
        Target = Annotated[RunId, Query(description="The run to align with.")]
        batcher = self.batchers[run_id]
        session_of = self.session

        @app.get(prefix, response_model=RunInfo, responses=problems, tags=tags)
        async def info() -> RunInfo:
            """The run, loaded now if it was not: code ranges, the scatter's projection, the oracle's yardstick."""
            return RunInfo(**(await session_of(run_id)).info())

        @app.get(f"{prefix}/codes", response_model=CodesPage, responses=problems, tags=tags)
        async def codes(
            offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
            decimals: Annotated[int, Query(ge=1, le=8, description="Rounding of every number.")] = 4,
        ) -> CodesPage:
            """One page of codes, scatter coordinates and true factors, in dataset order."""
            session = await session_of(run_id)
            page = await run_in_threadpool(session.codes_page, offset, limit, decimals)
            return CodesPage(run=run_id, colour_names=list(session.colour_names), **page)

        @app.get(f"{prefix}/verdicts", response_model=VerdictsPage, responses=problems, tags=tags)
        async def verdicts(
            offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
            limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = MAX_PAGE,
        ) -> VerdictsPage:
            """The oracle's verdict on every image's reconstruction (its code decoded), in dataset order, for
            colouring the scatter; computed on first use in chunks (decodes in between are not held up)."""
            session = await session_of(run_id)
            for start in range(0, session.n_images, VERDICT_CHUNK):
                if session.reconstruction_verdict is not None:
                    break
                await self.thread.run(session.verdict_rows, start)
            verdict = session.reconstruction_verdict
            rows = slice(offset, min(offset + limit, session.n_images))
            return VerdictsPage(run=run_id, total=session.n_images, offset=offset, count=max(0, rows.stop - rows.start),
                                shape_ok=verdict.shape_ok[rows].tolist(), in_range=verdict.in_range[rows].tolist(),
                                valid=verdict.valid[rows].tolist(),
                                shape_residual=finite_or_none(np.round(verdict.shape_residual[rows], 5).tolist()),
                                threshold=verdict.shape_threshold)

        @app.get(f"{prefix}/images/{{index}}", response_model=ImageResponse, responses=problems, tags=tags)
        async def image(index: Index) -> ImageResponse:
            """A dataset image with its true factors and code (for hovering a point)."""
            found = (await session_of(run_id)).image(index)
            return ImageResponse(run=run_id, image_shape=list(found["image"].shape), image_encoding=IMAGE_ENCODING,
                                 image=encode_images(found["image"][None])[0],
                                 **{k: found[k] for k in ("index", "factors", "is_test", "code")})

        @app.post(f"{prefix}/encode", response_model=EncodeResponse, responses=problems, tags=tags)
        async def encode(request: EncodeRequest) -> EncodeResponse:  # type: ignore[valid-type]
            """Encode the dataset image at ``index`` with the run's encoder."""
            session = await session_of(run_id)
            mean, logvar = await self.thread.run(session.encode, request.index)
            return EncodeResponse(run=run_id, index=request.index, code=mean.tolist(),
                                  logvar=None if logvar is None else logvar.tolist())

        async def decoded(request: Any, client: Hashable) -> DecodeResponse:
            found = await batcher.submit(np.asarray(request.codes, dtype=np.float32), source=client)
            return decode_response(await session_of(run_id), found)

        @app.post(f"{prefix}/decode", response_model=DecodeResponse, responses=problems, tags=tags)
        async def decode(request: DecodeRequest, http: Request) -> DecodeResponse:  # type: ignore[valid-type]
            """Decode a batch of codes; the oracle fits a heatmap to each image and says whether it is valid: a
            heatmap of the family (shape) with factors inside the data's box (range)."""
            return await decoded(request, http.client)

        self.shortcuts[f"{prefix}/decode"] = Shortcut(DecodeRequest, decoded, DECODE_RESPONSE)

        @app.post(f"{prefix}/paths", response_model=PathResponse, responses=problems, tags=tags)
        async def paths(request: PathRequest) -> PathResponse:  # type: ignore[valid-type]
            """Sample a path (a line between two codes, an arc around a centre, the isovariance path) and decode it."""
            session = await session_of(run_id)
            path = await self.thread.run(functools.partial(session.path, **request.model_dump()))
            decoded = await batcher.submit(path.points.astype(np.float32))
            return PathResponse(run=run_id, kind=request.kind, description=path.description,
                                points=path.points.tolist(), projected=session.view.apply(path.points).tolist(),
                                decoded=decode_response(session, decoded))

        @app.post(f"{prefix}/compass", response_model=CompassResponse, responses=problems, tags=tags)
        async def compass(request: CompassRequest) -> CompassResponse:  # type: ignore[valid-type]
            """The gradient of each recovered factor (log variances, rho, log df) over the latent axes at a code, by
            central differences: the code and its 2D neighbours decoded in one batch, one oracle call."""
            session = await session_of(run_id)
            code = np.asarray(request.code, dtype=np.float64)
            stencil_codes, step, note = session.compass_codes(code, request.step)
            decoded = await batcher.submit(stencil_codes.astype(np.float32))
            found = session.compass(code, step, decoded.decoded, stencil_codes)
            return CompassResponse(
                run=run_id, code=code.tolist(), step=step, factor_names=list(found.factor_names), units=found.units,
                value=finite_or_none(found.value.tolist()),
                gradient=None if found.gradient is None else finite_or_none(found.gradient.tolist()),
                status=found.status, message="; ".join(filter(None, (found.message(), note))),
                shape_ok=found.verdict.shape_ok.tolist(),
                in_range=found.verdict.in_range.tolist(), threshold=found.verdict.shape_threshold)

        @app.get(f"{prefix}/alignment", response_model=AlignmentInfo, responses=problems, tags=tags)
        async def alignment(target: Target) -> AlignmentInfo:
            """How this run's codes map to ``target``'s through the images both encode, and how well (held out)."""
            await session_of(run_id)
            await session_of(target)
            fitted = await self.thread.run(self.explorer.alignment, run_id, target)
            return alignment_info(run_id, target, fitted)

        @app.post(f"{prefix}/correspond", response_model=CorrespondResponse, responses=problems, tags=tags)
        async def correspond(request: CorrespondRequest) -> CorrespondResponse:  # type: ignore[valid-type]
            """Map codes of this run to the corresponding codes of ``target`` (the alignment fitted on the images both
            encode) and decode them there."""
            await session_of(run_id)
            target_session = await session_of(request.target)
            codes = np.asarray(request.codes, dtype=np.float32)
            mapped, support = await self.thread.run(self.explorer.correspond, run_id, request.target, codes)
            decoded = await self.batchers[request.target].submit(mapped.astype(np.float32))
            fitted = self.explorer.aligned(run_id, request.target)
            return CorrespondResponse(run=run_id, target=request.target, codes=mapped.tolist(),
                                      support=finite_or_none(support.tolist()),
                                      alignment=alignment_info(run_id, request.target, fitted),
                                      decoded=decode_response(target_session, decoded))


def build_app(explorer: Explorer, max_batch: int = 256,
              allowed_hosts: tuple[str, ...] | list[str] | None = None, *, freeze_heap: bool = False) -> FastAPI:
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
        telemetry={"tracing": False, "metrics": False, "logs": False},  # a local tool reports to nobody
        version=__version__,
        description=API_DESCRIPTION,
        exception_handlers={
            RequestValidationError: validation_problem,
            RunUnavailable: unavailable_problem,
            AtlasError: atlas_problem,
            StarletteHTTPException: http_problem_for(explorer.ids),
            Exception: internal_problem,
        },
    )
    limits = Limits(max_batch=max_batch, max_path_points=MAX_PATH_POINTS, max_body_bytes=MAX_BODY_BYTES,
                    max_page=MAX_PAGE, code_bound=CODE_BOUND)

    def decoder(run_id: str) -> Callable[[np.ndarray], AnsweredRows]:
        return lambda rows: AnsweredRows.of(explorer.session(run_id).decode(rows))

    batchers = {run_id: Batcher(decoder(run_id), max_batch, model_thread) for run_id in explorer.ids}

    @app.get("/api/runs", response_model=RunsResponse, tags=["runs"],
             responses={400: {"model": Problem, "description": "A bad Content-Length."},
                        413: {"model": Problem, "description": "Request body too large."}})
    def runs() -> RunsResponse:
        """Every run found in the folders served (study and sweep folders: every run in their runs/), with what
        its config says; none is loaded until it is used. And the request limits."""
        return RunsResponse(version=__version__, image_encoding=IMAGE_ENCODING, limits=limits,
                            runs=[RunListing(**entry.listing()) for entry in explorer.entries.values()],
                            skipped=[Skipped(**s) for s in explorer.skipped],
                            default=DefaultPair(a=explorer.default[0], b=explorer.default[1]))

    routes = RunRoutes(app, explorer, model_thread, batchers, max_batch, freeze_heap)
    for entry in explorer.entries.values():
        routes.add(entry)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(plotly_js_path(), media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.state.run_ids = explorer.ids
    app.state.explorer = explorer
    app.add_middleware(JsonShortcut, shortcuts=routes.shortcuts,  # added first: the checks added below see it all
                       handlers=app.exception_handlers)
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


def serve(folders: list[str | Path], host: str = "127.0.0.1", port: int = 8000, torch_threads: int = 1) -> None:
    """Find the runs (run folders, study or sweep folders), print the address and serve until interrupted.

    On a loopback address only requests naming a loopback host are answered (``trusted_hosts``), so a web
    page whose domain is rebound to 127.0.0.1 cannot read the API; on any other address every host is.

    Torch gets ``torch_threads`` intra-op threads (1: on a small, shared machine a second one costs more
    than it gains; see benchmarks/explorer_load.py), and the process does without oneDNN (mkldnn): the
    server's work is small batches, where oneDNN's transposed convolutions cost more than PyTorch's own (the
    default VAE decodes 8 codes in 1.0 ms instead of 1.8; single-code p99 with 8 clients 29 ms instead of 34).
    Training keeps oneDNN, which doubles its throughput; the server trains nothing.
    """
    import uvicorn

    torch.set_num_threads(torch_threads)
    torch.backends.mkldnn.enabled = False
    sock = listening_socket(host, port)  # first: a taken port fails before the runs are read
    with sock:
        bound_host, bound_port = sock.getsockname()[:2]
        app = create_app(folders, allowed_hosts=trusted_hosts(host, bound_host), freeze_heap=True)
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        ids = app.state.run_ids
        listed = ", ".join(ids[:4]) + (f" and {len(ids) - 4} more" if len(ids) > 4 else "")
        print(f"latent-atlas explorer: http://{shown}:{bound_port}/  serving {len(ids)} run{'s' * (len(ids) != 1)} "
              f"({listed}); Ctrl-C to stop", flush=True)
        # no proxy stands in front of a local tool: the client's address is the socket's, not a header's
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", proxy_headers=False))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C, then re-raises it
            print("latent-atlas explorer: stopped", flush=True)
