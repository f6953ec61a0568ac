"""The explorer's JSON API through the app's test client: answers checked against the library, bad input rejected."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from latent_atlas.analysis.latents import run_latents
from latent_atlas.analysis.projection import project
from latent_atlas.analysis.traversals import angular_traversal, interpolate
from latent_atlas.corruptions import shape_threshold_for
from latent_atlas.errors import AtlasError
from latent_atlas.explorer import create_app, serve
from latent_atlas.explorer.app import (
    LOOPBACK_HOSTS,
    MAX_BODY_BYTES,
    listening_socket,
    trusted_hosts,
)
from latent_atlas.explorer.batching import Batcher, ModelThread
from latent_atlas.explorer.service import Explorer, RunSession
from latent_atlas.io import write_json
from latent_atlas.models.inference import decode
from latent_atlas.oracle import HeatmapOracle
from latent_atlas.training import load_run, train
from latent_atlas.training.run import ORACLE_FILE
from latent_atlas.verdicts import FactorBox

from .conftest import tiny_model_config, tiny_train_config

MAX_BATCH = 8


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, trained_runs) -> Path:
    """A private copy of the shared tiny runs (the explorer caches latent codes in a run folder)."""
    root = tmp_path_factory.mktemp("explorer") / "runs"
    shutil.copytree(trained_runs["vae"].path.parent, root)
    return root


@pytest.fixture(scope="module")
def client(runs_dir):
    app = create_app([runs_dir / "vae", runs_dir / "ae"], max_batch=MAX_BATCH)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def run(runs_dir):
    return load_run(runs_dir / "vae")


@pytest.fixture(scope="module")
def explorer(runs_dir, client) -> Explorer:
    """The service layer alone, for the same two runs (after ``client`` has cached their latent codes)."""
    return Explorer.load([runs_dir / "vae", runs_dir / "ae"])


@pytest.fixture(scope="module")
def run5(tmp_path_factory, tiny_dataset):
    """A run with latent dimension 5: the scatter shows a PCA view, the sliders cover all 5 axes."""
    root = tmp_path_factory.mktemp("explorer5")
    tiny_dataset.save(root / "tiny.npz")
    return train(tiny_dataset, root / "tiny.npz", tiny_model_config(kind="vae", latent_dim=5),
                 tiny_train_config(epochs=1), root / "vae5", progress=False).run


def image_bytes(answer: dict, row: int) -> np.ndarray:
    shape = answer["image_shape"]
    encoded = answer["images"][row] if "images" in answer else answer["image"]
    return np.frombuffer(base64.b64decode(encoded), dtype=np.uint8).reshape(shape)


def detail_text(response) -> str:
    body = response.json()
    return body.get("message") or json.dumps(body["detail"])


# ---------- happy paths ----------


def test_run_info_describes_both_runs_and_the_limits(client, run):
    answer = client.get("/api/runs").json()
    assert answer["image_encoding"] == "uint8-base64"
    assert answer["limits"]["max_batch"] == MAX_BATCH
    assert answer["limits"]["max_body_bytes"] == MAX_BODY_BYTES
    vae, ae = answer["runs"]
    assert (vae["id"], vae["kind"], ae["id"], ae["kind"]) == ("vae", "vae", "ae", "ae")
    latents = run_latents(run)
    np.testing.assert_allclose(vae["code_min"], latents.codes.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(vae["code_max"], latents.codes.max(axis=0), rtol=1e-6)
    assert vae["latent_dim"] == 3 and vae["projection"]["method"] == "axes"
    assert vae["factor_names"] == ["var_x", "var_y", "rho"]
    assert vae["colour_names"] == ["var_x", "var_y", "rho", "var_diff"]
    dataset = run.load_dataset()
    assert vae["oracle"]["threshold"] == shape_threshold_for(dataset.config)  # the benchmark's rule, no model
    assert vae["oracle"]["box"] == FactorBox.from_config(dataset.config).to_dict()
    assert "corruption benchmark" in vae["oracle"]["source"] and "var_x [" in vae["oracle"]["source"]


def test_codes_pages_hold_the_runs_codes_and_factors(client, run):
    latents = run_latents(run)
    page = client.get("/api/runs/vae/codes", params={"offset": 10, "limit": 5, "decimals": 6}).json()
    assert (page["total"], page["offset"], page["count"]) == (len(latents.codes), 10, 5)
    np.testing.assert_allclose(page["codes"], latents.codes[10:15], atol=1e-6)
    np.testing.assert_allclose(page["projected"], latents.codes[10:15], atol=1e-6)  # axes view for D = 3
    colours = np.asarray(page["colours"])
    np.testing.assert_allclose(colours[:, :3], latents.factors[10:15], atol=1e-6)
    np.testing.assert_allclose(colours[:, 3], latents.factor("var_x")[10:15] - latents.factor("var_y")[10:15],
                               atol=1e-5)
    assert page["is_test"] == latents.is_test[10:15].tolist()
    past_the_end = client.get("/api/runs/vae/codes", params={"offset": 10_000}).json()
    assert past_the_end["count"] == 0 and past_the_end["codes"] == []


def test_decode_matches_the_model_and_the_oracle(client, run):
    codes = np.array([[0.0, 0.0, 0.0], [0.5, -0.3, 0.2]], dtype=np.float32)
    answer = client.post("/api/runs/vae/decode", json={"codes": codes.tolist()}).json()
    images = decode(run.load_model(), codes)  # (2, 12, 12)
    for row in range(2):
        # row 0 of the bytes is row 0 of the image (y = -extent), as in the dataset
        np.testing.assert_allclose(image_bytes(answer, row) / 255.0, images[row], atol=0.5 / 255 + 1e-6)
    found = HeatmapOracle.for_dataset(run.load_dataset()).verdict(images)
    np.testing.assert_allclose(answer["factors"], found.factors, rtol=1e-6)
    np.testing.assert_allclose(answer["residual"], found.residual, rtol=1e-6)
    np.testing.assert_allclose(answer["shape_residual"], found.shape_residual, rtol=1e-6)
    assert answer["threshold"] == found.shape_threshold
    shape_ok = (np.asarray(answer["shape_residual"]) <= answer["threshold"]).tolist()
    assert answer["shape_ok"] == shape_ok
    assert answer["in_range"] == found.box.contains(np.asarray(answer["factors"])).tolist()
    assert answer["valid"] == (np.array(shape_ok) & np.array(answer["in_range"])).tolist()
    assert answer["failure"] == found.failure.tolist()
    assert answer["factor_names"] == ["var_x", "var_y", "rho"]


def test_both_runs_decode_the_same_code_differently(client):
    code = {"codes": [[0.3, 0.1, -0.2]]}
    vae = client.post("/api/runs/vae/decode", json=code).json()
    ae = client.post("/api/runs/ae/decode", json=code).json()
    assert vae["images"][0] != ae["images"][0]


def test_hover_image_is_the_dataset_image(client, run):
    dataset, latents = run.load_dataset(), run_latents(run)
    answer = client.get("/api/runs/ae/images/5").json()
    np.testing.assert_allclose(image_bytes(answer, 0) / 255.0, dataset.images[5], atol=0.5 / 255 + 1e-6)
    assert answer["factors"] == dict(zip(dataset.factor_names, dataset.factors[5].tolist()))
    assert answer["is_test"] == bool(latents.is_test[5])


def test_encode_gives_the_runs_code(client, run, runs_dir):
    answer = client.post("/api/runs/vae/encode", json={"index": 7}).json()
    latents = run_latents(run)
    np.testing.assert_allclose(answer["code"], latents.codes[7], atol=1e-5)
    np.testing.assert_allclose(answer["logvar"], latents.logvar[7], atol=1e-5)
    assert client.post("/api/runs/ae/encode", json={"index": 7}).json()["logvar"] is None


def test_line_and_angular_paths_are_the_traversals_decoded(client):
    start, end = [-1.0, 0.0, 0.5], [1.0, 0.5, -0.5]
    line = client.post("/api/runs/vae/paths", json={"kind": "line", "start": start, "end": end, "n_points": 5}).json()
    np.testing.assert_allclose(line["points"], interpolate(start, end, 5))
    np.testing.assert_allclose(line["projected"], line["points"], atol=1e-9)
    assert len(line["decoded"]["images"]) == 5 and len(line["decoded"]["factors"]) == 5

    arc = client.post("/api/runs/vae/paths", json={
        "kind": "angular", "center": [0.0, 0.0, 0.0], "axes": [0, 2], "radius": 0.5, "n_points": 8}).json()
    np.testing.assert_allclose(arc["points"], angular_traversal([0.0, 0.0, 0.0], axes=(0, 2), radius=0.5, n_points=8))
    points = np.asarray(arc["points"])
    np.testing.assert_allclose(np.hypot(points[:, 0], points[:, 2]), 0.5)


def test_isovariance_path_walks_the_strip(client):
    answer = client.post("/api/runs/vae/paths", json={"kind": "isovariance", "n_points": 6, "n_bins": 3}).json()
    assert answer["kind"] == "isovariance"
    assert np.asarray(answer["points"]).shape == (6, 3)
    assert "var_x - var_y" in answer["description"]


def test_page_and_plotly_are_served_by_the_app(client):
    page = client.get("/")
    assert page.status_code == 200 and "/vendor/plotly.min.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy and "unsafe-eval" not in policy
    plotly_js = client.get("/vendor/plotly.min.js")
    assert plotly_js.status_code == 200 and b"plotly.js" in plotly_js.content[:200]
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    static_text = " ".join(client.get(path).text for path in ("/", "/static/app.js", "/static/style.css"))
    assert "http://" not in static_text and "https://" not in static_text  # nothing from a CDN


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py",
                                  "/static/%2fetc%2fpasswd"])
def test_static_files_never_leave_the_static_folder(client, path):
    response = client.get(path)
    assert response.status_code == 404 and "AtlasError" not in response.text


def test_no_page_loads_scripts_from_a_cdn(client):
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404


def test_openapi_schema_states_the_bounds(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    codes = schemas["DecodeRequest"]["properties"]["codes"]
    assert codes["maxItems"] == MAX_BATCH and codes["minItems"] == 1
    assert codes["items"]["minItems"] == codes["items"]["maxItems"] == 3
    assert schemas["DecodeRequest"]["additionalProperties"] is False


# ---------- bad input: always a 4xx that says what is wrong ----------

DECODE = "/api/runs/vae/decode"
BAD_DECODE_BODIES = {
    "wrong dimension": ('{"codes": [[0.0, 0.0]]}', 422, "at least 3"),
    "too many coordinates": ('{"codes": [[0, 0, 0, 0]]}', 422, "at most 3"),
    "NaN": ('{"codes": [[NaN, 0, 0]]}', 422, "finite"),
    "Infinity": ('{"codes": [[0, -Infinity, 0]]}', 422, "finite"),
    "overflowing number": ('{"codes": [[1e999, 0, 0]]}', 422, "finite"),
    "coordinate out of bounds": ('{"codes": [[1e6, 0, 0]]}', 422, "less than or equal"),
    "empty batch": ('{"codes": []}', 422, "at least 1"),
    "batch above the limit": (json.dumps({"codes": [[0, 0, 0]] * (MAX_BATCH + 1)}), 422, f"at most {MAX_BATCH}"),
    "not a list": ('{"codes": "0,0,0"}', 422, "list"),
    "string coordinate": ('{"codes": [["a", 0, 0]]}', 422, "number"),
    "extra field": ('{"codes": [[0, 0, 0]], "path": "/etc/passwd"}', 422, "Extra inputs"),
    "missing field": ("{}", 422, "codes: Field required"),
    "broken JSON": ('{"codes": [[0, 0, 0]', 422, "JSON decode error"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, 400, "maximum recursion depth"),
    "huge integer": ('{"codes": [[' + "9" * 5000 + ", 0, 0]]}", 400, "digits"),
    "not UTF-8": (b'{"codes": [[\xff, 0, 0]]}', 400, "not readable JSON"),
}


@pytest.mark.parametrize("case", BAD_DECODE_BODIES.values(), ids=BAD_DECODE_BODIES.keys())
def test_bad_decode_bodies_are_rejected_with_a_reason(client, case):
    body, status, reason = case
    response = client.post(DECODE, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert reason in detail_text(response)


def test_oversized_bodies_are_rejected_before_and_while_reading(client):
    declared = client.post(DECODE, content=b" " * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "larger than the limit" in declared.json()["detail"]

    def chunks():  # no Content-Length: the body is counted as it arrives
        for _ in range(MAX_BODY_BYTES // 50_000 + 2):
            yield b" " * 50_000

    streamed = client.post(DECODE, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "larger than the limit" in streamed.json()["detail"]


BAD_REQUESTS = {
    "unknown run": ("post", "/api/runs/nope/decode", {"codes": [[0, 0, 0]]}, "'vae' or 'ae'"),
    "run named by a path": ("get", "/api/runs/..%2F..%2Fetc/codes", None, "Not Found"),
    "run named by a folder": ("get", "/api/runs/%2Ftmp/codes", None, "Not Found"),
    "run named by a file": ("get", "/api/runs/model.safetensors/codes", None, "'vae' or 'ae'"),
    "image index too large": ("get", "/api/runs/vae/images/36", None, "less than or equal to 35"),
    "negative image index": ("get", "/api/runs/vae/images/-1", None, "greater than or equal to 0"),
    "encode index too large": ("post", "/api/runs/ae/encode", {"index": 10**12}, "less than or equal to 35"),
    "encode index not an integer": ("post", "/api/runs/ae/encode", {"index": 1.5}, "integer"),
    "page too long": ("get", "/api/runs/vae/codes?limit=10000000", None, "less than or equal"),
    "unknown path kind": ("post", "/api/runs/vae/paths", {"kind": "spiral"}, "'line', 'angular', 'isovariance'"),
    "line without an end": ("post", "/api/runs/vae/paths", {"kind": "line", "start": [0, 0, 0]}, "end: Field required"),
    "path with too many points": ("post", "/api/runs/vae/paths",
                                  {"kind": "line", "start": [0, 0, 0], "end": [1, 1, 1], "n_points": 10**6},
                                  "less than or equal to 64"),
    "arc in one axis": ("post", "/api/runs/vae/paths", {"kind": "angular", "center": [0, 0, 0], "axes": [1, 1]},
                        "distinct latent axes"),
    "arc axis out of range": ("post", "/api/runs/vae/paths", {"kind": "angular", "center": [0, 0, 0], "axes": [0, 3]},
                              "less than or equal to 2"),
    "arc of zero radius": ("post", "/api/runs/vae/paths",
                           {"kind": "angular", "center": [0, 0, 0], "axes": [0, 1], "radius": 0}, "greater than 0"),
    "isovariance along a missing axis": ("post", "/api/runs/vae/paths", {"kind": "isovariance", "axis": 5},
                                         "less than or equal to 2"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_are_4xx_with_a_reason(client, case):
    method, path, body, reason = case
    response = client.request(method, path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert reason in detail_text(response)


@pytest.mark.parametrize("shape", [(3, 2), (2, 6), (1, 6), (6,), (2, 3, 1), (1, 2)])
def test_codes_of_the_wrong_width_are_rejected_not_reshaped(explorer, shape):
    with pytest.raises(AtlasError, match=r"codes must have shape \(B, 3\)"):
        explorer["vae"].decode(np.zeros(shape, dtype=np.float32))


def test_a_wrong_width_request_in_a_batch_fails_alone(explorer):
    """A (1, 6) request must not come back as two decoded 3-D codes, nor spoil the requests batched with it."""
    session = explorer["vae"]

    async def scenario():
        batcher = Batcher(session.decode, max_rows=64, thread=thread)
        inputs = [np.zeros((1, 3)), np.zeros((1, 6)), np.ones((2, 3))]
        return await asyncio.gather(*(batcher.submit(x.astype(np.float32)) for x in inputs), return_exceptions=True)

    thread = ModelThread(torch_threads=1)
    first, wrong, last = asyncio.run(scenario())
    thread.close()
    assert isinstance(wrong, AtlasError) and "(B, 3)" in str(wrong)
    assert first.images.shape == (1, 12, 12) and last.images.shape == (2, 12, 12)


# ---------- hardening: Host names, response headers ----------

EVERY_KIND_OF_RESPONSE = {
    "page": ("get", "/", None, 200),
    "static file": ("get", "/static/app.js", None, 200),
    "vendor script": ("get", "/vendor/plotly.min.js", None, 200),
    "API answer": ("get", "/api/runs", None, 200),
    "decode": ("post", DECODE, {"codes": [[0, 0, 0]]}, 200),
    "invalid input": ("post", DECODE, {"codes": [[0, 0]]}, 422),
    "unknown path": ("get", "/nope", None, 404),
    "missing static file": ("get", "/static/nope.js", None, 404),
    "body too large": ("post", DECODE, " " * (MAX_BODY_BYTES + 1), 413),
    "wrong method": ("delete", "/api/runs", None, 405),
}


@pytest.mark.parametrize("case", EVERY_KIND_OF_RESPONSE.values(), ids=EVERY_KIND_OF_RESPONSE.keys())
def test_every_response_says_nosniff(client, case):
    method, path, body, status = case
    content = {"content": body} if isinstance(body, str) else {"json": body}
    response = client.request(method, path, **content)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_an_internal_error_is_a_500_with_the_security_headers(runs_dir, monkeypatch):
    def broken(self):
        raise RuntimeError("a bug")

    app = create_app([runs_dir / "vae"])
    monkeypatch.setattr(RunSession, "info", broken)
    with TestClient(app, raise_server_exceptions=False) as failing:
        response = failing.get("/api/runs")
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.fixture(scope="module")
def loopback_client(runs_dir, client):
    app = create_app([runs_dir / "vae"], allowed_hosts=LOOPBACK_HOSTS)
    with TestClient(app, base_url="http://127.0.0.1:8000") as test_client:
        yield test_client


HOST_HEADERS = {
    "evil.example": 400, "evil.example:8000": 400, "127.0.0.1.evil.example": 400, "localhost.evil.example:80": 400,
    "evil.localhost": 400, "[::2]:8000": 400, "0.0.0.0:8000": 400, "": 400,
    "127.0.0.1:8000": 200, "127.0.0.1": 200, "localhost:8000": 200, "LocalHost": 200, "[::1]:8000": 200,
    "[::1]": 200,
}


@pytest.mark.parametrize("host, status", HOST_HEADERS.items(), ids=[repr(h) for h in HOST_HEADERS])
def test_a_loopback_app_answers_only_requests_naming_a_loopback_host(loopback_client, host, status):
    for method, path, body in (("get", "/", None), ("get", "/api/runs", None), ("post", DECODE, {"codes": [[0] * 3]}),
                               ("get", "/vendor/plotly.min.js", None)):
        response = loopback_client.request(method, path, json=body, headers={"Host": host})
        assert response.status_code == status, (method, path, response.text[:200])
        assert response.headers["x-content-type-options"] == "nosniff"


def test_an_app_without_a_host_list_answers_any_host(client):
    assert client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 200


@pytest.mark.parametrize("host, address, expected", [
    ("127.0.0.1", "127.0.0.1", LOOPBACK_HOSTS),
    ("localhost", "127.0.0.1", LOOPBACK_HOSTS),
    ("::1", "::1", LOOPBACK_HOSTS),
    ("127.0.0.2", "127.0.0.2", (*LOOPBACK_HOSTS, "127.0.0.2")),
    ("ip6-localhost", "::1", (*LOOPBACK_HOSTS, "ip6-localhost")),
    ("0.0.0.0", "0.0.0.0", None),
    ("::", "::", None),
    ("", "0.0.0.0", None),
    ("192.168.1.5", "192.168.1.5", None),
])
def test_serving_on_loopback_trusts_only_loopback_host_names(host, address, expected):
    assert trusted_hosts(host, address) == expected


def test_serve_on_loopback_rejects_other_host_names(runs_dir, client, monkeypatch, capsys):
    served = []
    monkeypatch.setattr(uvicorn.Server, "run",
                        lambda server, sockets: served.append((server.config.app, sockets[0].getsockname()[1])))
    serve([runs_dir / "vae"], host="127.0.0.1", port=0, torch_threads=torch.get_num_threads())
    (app, port), = served
    assert f"http://127.0.0.1:{port}/" in capsys.readouterr().out
    with TestClient(app) as served_client:
        assert served_client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
        assert served_client.get("/api/runs", headers={"Host": f"127.0.0.1:{port}"}).status_code == 200


# ---------- concurrency: batched requests get their own answers ----------


def test_concurrent_decodes_each_get_their_own_image(client):
    codes = np.random.default_rng(0).uniform(-1, 1, size=(12, 3)).round(4)
    alone = [client.post(DECODE, json={"codes": [c.tolist()]}).json() for c in codes]

    async def together() -> list[dict]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answers = await asyncio.gather(*(http.post(DECODE, json={"codes": [c.tolist()]}) for c in codes))
        return [a.json() for a in answers]

    for single, batched in zip(alone, asyncio.run(together())):
        assert batched["images"] == single["images"]
        np.testing.assert_allclose(batched["factors"], single["factors"], rtol=1e-6)


class Rows:
    def __init__(self, values):
        self.values = values

    def rows(self, start, stop):
        return Rows(self.values[start:stop])


def test_model_work_runs_on_one_dedicated_thread():
    thread = ModelThread(torch_threads=1)

    async def scenario():
        return await asyncio.gather(*(thread.run(threading.get_ident) for _ in range(4)))

    first = asyncio.run(scenario())
    thread.close()
    again = asyncio.run(scenario())  # a closed thread starts afresh on the next use
    thread.close()
    assert len(set(first)) == 1 and len(set(again)) == 1
    assert threading.get_ident() not in first + again


def test_batcher_merges_requests_that_wait_while_it_works():
    calls = []

    def work(rows: np.ndarray) -> Rows:
        calls.append(len(rows))
        time.sleep(0.05)
        return Rows(rows * 10)

    async def scenario():
        batcher = Batcher(work, max_rows=4, thread=thread)
        first = asyncio.ensure_future(batcher.submit(np.array([[1.0]])))
        await asyncio.sleep(0.01)  # the first request is being computed, alone
        rest = [batcher.submit(np.array([[float(i)], [float(i)]])) for i in range(2, 5)]
        return [await first, *await asyncio.gather(*rest)]

    thread = ModelThread(torch_threads=1)
    results = asyncio.run(scenario())
    thread.close()
    assert [r.values[:, 0].tolist() for r in results] == [[10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0]]
    assert calls == [1, 4, 2]  # waiting requests went together, up to max_rows


def test_batcher_isolates_a_failing_request():
    calls = []

    def work(rows: np.ndarray) -> Rows:
        calls.append(len(rows))
        if np.any(rows < 0):
            raise ValueError("negative row")
        return Rows(rows * 10)

    async def scenario():
        batcher = Batcher(work, max_rows=100, thread=thread)
        inputs = [np.array([[1.0]]), np.array([[-1.0]]), np.array([[2.0]])]
        return await asyncio.gather(*(batcher.submit(x) for x in inputs), return_exceptions=True)

    thread = ModelThread(torch_threads=1)
    good, bad, other = asyncio.run(scenario())
    thread.close()
    assert good.values.item() == 10.0 and other.values.item() == 20.0
    assert isinstance(bad, ValueError)
    assert calls == [3, 1, 1, 1]  # the batch failed, so each request ran alone


# ---------- loading ----------


def test_latent_dimension_five_gets_a_pca_view_and_five_coordinates(run5):
    app = create_app([run5.path], max_batch=MAX_BATCH)
    with TestClient(app) as five:
        info = five.get("/api/runs").json()["runs"][0]
        assert info["latent_dim"] == 5 and info["projection"]["method"] == "pca"
        codes = run_latents(run5).codes
        page = five.get("/api/runs/vae5/codes", params={"decimals": 8}).json()
        np.testing.assert_allclose(page["projected"], project(codes, "pca", 3), atol=1e-6)
        view = info["projection"]
        placed = codes @ np.asarray(view["components"]).T + np.asarray(view["offset"])
        np.testing.assert_allclose(placed, page["projected"], atol=1e-5)  # any code can be placed in the view
        assert five.post("/api/runs/vae5/decode", json={"codes": [[0.1] * 5]}).status_code == 200
        three = five.post("/api/runs/vae5/decode", json={"codes": [[0.1] * 3]})
        assert three.status_code == 422 and "at least 5" in three.json()["message"]


def test_loading_problems_are_atlas_errors(runs_dir, run5, tmp_path):
    with pytest.raises(AtlasError, match="not found"):
        create_app([tmp_path / "missing"])
    with pytest.raises(AtlasError, match=r"share a latent dimension.*vae \(latent dimension 3\).*vae5 \(latent dimension 5\)"):
        create_app([runs_dir / "vae", run5.path])
    with pytest.raises(AtlasError, match="compares two"):
        create_app([runs_dir / "vae"] * 3)
    broken = tmp_path / "broken"
    shutil.copytree(runs_dir, broken)
    (broken / "vae" / "model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(AtlasError, match="safetensors"):
        create_app([broken / "vae"])


def test_runs_on_one_dataset_share_one_model_independent_oracle(client, runs_dir):
    vae, ae = (info["oracle"] for info in client.get("/api/runs").json()["runs"])
    assert vae == ae  # one yardstick for both runs, whatever the models
    sessions = Explorer.load([runs_dir / "vae", runs_dir / "ae"]).sessions
    assert sessions["ae"].oracle is sessions["vae"].oracle
    assert sessions["vae"].oracle.threshold_ is None  # nothing calibrated on reconstructions


def test_a_saved_legacy_oracle_json_does_not_change_the_verdict(runs_dir, tmp_path, client):
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    dataset = load_run(copy / "vae").load_dataset()
    saved = HeatmapOracle.for_dataset(dataset).fit(dataset.images[:5])  # a calibrated threshold near 1e-7
    write_json(copy / "vae" / ORACLE_FILE, saved.to_dict())
    sessions = Explorer.load([copy / "vae"]).sessions
    assert sessions["vae"].oracle.shape_threshold == shape_threshold_for(dataset.config)
    codes = np.array([[0.0, 0.0, 0.0]], dtype=np.float32)
    expected = client.post("/api/runs/vae/decode", json={"codes": codes.tolist()}).json()
    decoded = sessions["vae"].decode(codes)
    assert decoded.verdict.valid.tolist() == expected["valid"]


def test_the_same_folder_name_twice_gets_two_ids(runs_dir, tmp_path):
    other = tmp_path / "elsewhere"
    shutil.copytree(runs_dir, other)
    app = create_app([runs_dir / "vae", other / "vae"])
    assert app.state.run_ids == ("vae", "vae-2")


def test_an_address_in_use_is_an_atlas_error():
    with listening_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(AtlasError, match=f"cannot listen on 127.0.0.1:{port}"):
            listening_socket("127.0.0.1", port)
    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
