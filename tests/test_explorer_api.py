"""The explorer's JSON API through the app's test client: answers checked against the library, bad input rejected."""

from __future__ import annotations

import asyncio
import base64
import gc
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
from latent_atlas.explorer.alignment import CodeAlignment, code_spacing
from latent_atlas.explorer.app import (
    LOOPBACK_HOSTS,
    MAX_BODY_BYTES,
    AnsweredRows,
    decode_response,
    listening_socket,
    trusted_hosts,
)
from latent_atlas.explorer.batching import Batcher, ModelThread
from latent_atlas.explorer.service import Explorer, RunSession
from latent_atlas.explorer.shortcut import Shortcut
from latent_atlas.io import read_json, write_json
from latent_atlas.models.inference import decode
from latent_atlas.oracle import HeatmapOracle
from latent_atlas.training import load_run, train
from latent_atlas.training.run import LATENTS_FILE, ORACLE_FILE
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
def explorer(runs_dir) -> Explorer:
    """The service layer alone, for the same two runs."""
    return Explorer.from_folders([runs_dir / "vae", runs_dir / "ae"])


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


def test_run_listing_describes_both_runs_and_the_limits(client):
    answer = client.get("/api/runs").json()
    assert answer["image_encoding"] == "uint8-base64"
    assert answer["limits"]["max_batch"] == MAX_BATCH
    assert answer["limits"]["max_body_bytes"] == MAX_BODY_BYTES
    vae, ae = answer["runs"]
    assert (vae["id"], vae["kind"], ae["id"], ae["kind"]) == ("vae", "vae", "ae", "ae")
    settings = (vae["latent_dim"], vae["seed"], vae["beta"], vae["dataset_kind"], vae["n_images"])
    assert settings == (3, 0, 1.0, "gaussian", 36)
    assert vae["ready"] and vae["collection"] == ""  # named directly, not found in a study folder
    assert answer["default"] == {"a": "vae", "b": "ae"}  # the two folders named, in order
    assert answer["skipped"] == []


def test_run_info_describes_the_loaded_run(client, run):
    vae = client.get("/api/runs/vae").json()
    latents = run_latents(run)
    np.testing.assert_allclose(vae["code_min"], latents.codes.min(axis=0), rtol=1e-6)
    np.testing.assert_allclose(vae["code_max"], latents.codes.max(axis=0), rtol=1e-6)
    assert vae["latent_dim"] == 3 and vae["projection"]["method"] == "axes"
    assert vae["factor_names"] == ["var_x", "var_y", "rho"]
    assert vae["colour_names"] == ["var_x", "var_y", "rho", "var_diff"]
    assert vae["code_spacing"] == pytest.approx(code_spacing(latents.codes))
    assert vae["compass_step"] == pytest.approx(0.5 * vae["code_spacing"])
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


def test_verdicts_are_the_oracles_on_every_reconstruction(client, run):
    latents = run_latents(run)
    images = decode(run.load_model(), latents.codes)
    expected = HeatmapOracle.for_dataset(run.load_dataset()).verdict(images, novelty=False)
    first = client.get("/api/runs/vae/verdicts", params={"limit": 20}).json()
    rest = client.get("/api/runs/vae/verdicts", params={"offset": 20}).json()
    assert (first["total"], first["count"], rest["count"]) == (36, 20, 16)
    for key in ("shape_ok", "in_range", "valid"):
        assert first[key] + rest[key] == getattr(expected, key).tolist()
    np.testing.assert_allclose(first["shape_residual"] + rest["shape_residual"], expected.shape_residual, atol=1e-5)
    assert first["threshold"] == expected.shape_threshold


def stencil_by_hand(code: np.ndarray, step: float) -> np.ndarray:
    rows = [code]
    for axis in range(len(code)):
        for sign in (1, -1):
            moved = code.copy()
            moved[axis] += sign * step
            rows.append(moved)
    return np.array(rows, dtype=np.float32)


@pytest.fixture(scope="module")
def lenient(runs_dir, tmp_path_factory):
    """The same runs in a study-shaped folder whose oracle/ file fixes a shape threshold of 10: every decode of the
    blurry 2-epoch models counts as a heatmap, so the compass has a gradient everywhere."""
    root = tmp_path_factory.mktemp("lenient")
    (root / "data").mkdir()
    shutil.copy(runs_dir / "tiny.npz", root / "data" / "tiny.npz")
    write_json(root / "oracle" / "tiny.json", {"shape_threshold": 10.0})
    for name in ("vae", "ae"):
        shutil.copytree(runs_dir / name, root / "runs" / name)
        config = read_json(root / "runs" / name / "config.json")
        config["data"]["path"] = "../../data/tiny.npz"
        write_json(root / "runs" / name / "config.json", config)
    with TestClient(create_app([root], max_batch=MAX_BATCH)) as test_client:
        yield test_client


def test_compass_is_the_central_difference_of_the_recovered_factors(lenient, run):
    code = np.array([0.2, -0.1, 0.3])
    answer = lenient.post("/api/runs/vae/compass", json={"code": code.tolist(), "step": 0.05}).json()
    images = decode(run.load_model(), stencil_by_hand(code, 0.05))  # (7, 12, 12)
    found = HeatmapOracle.for_dataset(run.load_dataset(), shape_threshold=10.0).verdict(images, novelty=False)
    values = np.column_stack([np.log(found.factors[:, 0]), np.log(found.factors[:, 1]), found.factors[:, 2]])
    assert answer["units"] == ["log var_x", "log var_y", "rho"] and answer["step"] == 0.05
    np.testing.assert_allclose(answer["value"], values[0], rtol=1e-5, atol=1e-7)
    assert answer["shape_ok"] == [True] * 7 and answer["in_range"] == found.in_range.tolist()
    assert answer["status"] == ("ok" if found.in_range.all() else "range")
    expected = np.stack([(values[1 + 2 * i] - values[2 + 2 * i]) / 0.1 for i in range(3)], axis=1)  # (K, D)
    np.testing.assert_allclose(answer["gradient"], expected, rtol=1e-4, atol=1e-5)


def test_compass_says_so_instead_of_a_gradient_where_decodes_are_not_heatmaps(client, run):
    code = np.array([0.2, -0.1, 0.3])
    answer = client.post("/api/runs/vae/compass", json={"code": code.tolist(), "step": 0.05}).json()
    found = HeatmapOracle.for_dataset(run.load_dataset()).verdict(decode(run.load_model(), stencil_by_hand(code, 0.05)),
                                                                  novelty=False)
    assert not found.shape_ok.all()  # the 2-epoch model's blurry decodes (shape residual about 1, threshold 0.063)
    assert answer["shape_ok"] == found.shape_ok.tolist()
    assert answer["gradient"] is None and answer["status"] == "shape"
    assert f"{int((~found.shape_ok).sum())} of the 7 decodes" in answer["message"]


def test_compass_defaults_to_half_a_code_spacing(client):
    info = client.get("/api/runs/ae").json()
    answer = client.post("/api/runs/ae/compass", json={"code": info["code_median"]}).json()
    assert answer["step"] == pytest.approx(info["compass_step"]) and len(answer["shape_ok"]) == 7


def test_a_compass_step_too_small_to_measure_is_raised_and_says_so(client):
    info = client.get("/api/runs/vae").json()
    tiny = client.post("/api/runs/vae/compass", json={"code": [0.2, -0.1, 0.3], "step": 1e-30}).json()
    # a thousandth of the default, or 200 float32 spacings of the code's largest coordinate if that is more
    assert tiny["step"] == pytest.approx(max(1e-3 * info["compass_step"], 200 * float(np.spacing(np.float32(0.3)))))
    assert "raised from 1e-30" in tiny["message"]
    far = client.post("/api/runs/vae/compass", json={"code": [-9931.76, 241.7, 9281.87]}).json()
    assert far["step"] == pytest.approx(200 * float(np.spacing(np.float32(9931.76))))  # float32 can take it
    assert "raised from" in far["message"]
    plain = client.post("/api/runs/vae/compass", json={"code": [0.2, -0.1, 0.3], "step": 0.05}).json()
    assert plain["step"] == 0.05 and "raised" not in plain["message"]


def test_correspond_maps_through_the_alignment_and_decodes_in_the_target(client, run, runs_dir):
    codes = np.array([[0.1, 0.2, -0.3], [1.0, -1.0, 0.5]])
    answer = client.post("/api/runs/vae/correspond", json={"target": "ae", "codes": codes.tolist()}).json()
    ae = load_run(runs_dir / "ae")
    dataset = run.load_dataset()
    alignment = CodeAlignment(seed=0).fit(run_latents(run).codes, run_latents(ae).codes, dataset.train_idx,
                                          dataset.test_idx)
    mapped = alignment.transform(codes.astype(np.float32))
    np.testing.assert_allclose(answer["codes"], mapped, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(answer["support"], alignment.support(codes.astype(np.float32)), rtol=1e-6)
    images = decode(ae.load_model(), mapped.astype(np.float32))
    for row in range(2):
        np.testing.assert_allclose(image_bytes(answer["decoded"], row) / 255.0, images[row], atol=0.5 / 255 + 1e-6)
    info = answer["alignment"]
    assert (info["method"], info["n_train"]) == (alignment.method_, len(dataset.train_idx))
    assert info["score"]["r2"] == pytest.approx(alignment.score_.r2)
    assert info["score"]["median_error"] == pytest.approx(alignment.score_.median_error)
    assert info["score"]["n"] == len(dataset.test_idx)
    assert {c["method"] for c in info["candidates"]} == {"procrustes", "affine", "knn", "affine_knn"}
    assert answer["decoded"]["run"] == "ae" and answer["target"] == "ae"


def test_alignment_reports_its_held_out_error_and_is_fitted_once(client, explorer):
    first = client.get("/api/runs/ae/alignment", params={"target": "vae"}).json()
    again = client.get("/api/runs/ae/alignment", params={"target": "vae"}).json()
    assert first == again and first["source"] == "ae" and first["target"] == "vae"
    assert first["method"] == max(first["selection"], key=first["selection"].get)
    assert f"R² {first['score']['r2']:.3f}" in first["description"]
    fitted = client.app.state.explorer.aligned("ae", "vae")
    client.get("/api/runs/ae/alignment", params={"target": "vae"})
    assert client.app.state.explorer.aligned("ae", "vae") is fitted


def test_runs_of_different_dimensions_align_through_an_affine_or_nonlinear_map(runs_dir, run5):
    app = create_app([runs_dir / "vae", run5.path], max_batch=MAX_BATCH)
    with TestClient(app) as both:
        answer = both.post("/api/runs/vae/correspond", json={"target": "vae5", "codes": [[0.0, 0.1, 0.2]]}).json()
        assert np.asarray(answer["codes"]).shape == (1, 5)
        assert answer["alignment"]["method"] in ("affine", "knn", "affine_knn")
        assert "procrustes" not in {c["method"] for c in answer["alignment"]["candidates"]}
        back = both.post("/api/runs/vae5/correspond", json={"target": "vae", "codes": [[0.0] * 5]}).json()
        assert np.asarray(back["codes"]).shape == (1, 3)


def test_runs_on_different_datasets_cannot_be_aligned(runs_dir, tmp_path, tiny_t_dataset):
    other = tmp_path / "t"
    other.mkdir()
    tiny_t_dataset.save(other / "tiny_t.npz")
    t_run = train(tiny_t_dataset, other / "tiny_t.npz", tiny_model_config(kind="ae"), tiny_train_config(epochs=1),
                  other / "ae_t", progress=False).run
    with TestClient(create_app([runs_dir / "vae", t_run.path], max_batch=MAX_BATCH)) as mixed:
        response = mixed.get("/api/runs/vae/alignment", params={"target": "ae_t"})
    assert response.status_code == 422 and "different datasets" in response.json()["detail"]


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
    schema = client.get("/openapi.json").json()
    schemas = schema["components"]["schemas"]
    codes = schemas["DecodeRequest3D"]["properties"]["codes"]
    assert codes["maxItems"] == MAX_BATCH and codes["minItems"] == 1
    assert codes["items"]["minItems"] == codes["items"]["maxItems"] == 3
    assert schemas["DecodeRequest3D"]["additionalProperties"] is False
    index = schema["paths"]["/api/runs/vae/images/{index}"]["get"]["parameters"][0]["schema"]
    assert (index["minimum"], index["maximum"]) == (0, 35)
    assert schemas["CorrespondRequest3D"]["properties"]["target"]["enum"] == ["vae", "ae"]


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


SHORTCUT_BODIES = {  # every one answered as FastAPI's own route answers it, whichever way it takes
    "floats": '{"codes": [[0.25, -0.5, 0.125], [1.5, 0.0, -2.0]]}',
    "integers": '{"codes": [[0, 1, -1]]}',
    "exponents": '{"codes": [[1e-3, 2E+0, -0.5e1]]}',
    "a key twice": '{"codes": [[9, 9, 9]], "codes": [[0, 0, 0]]}',
    "spaces": ' { "codes" : [ [ 0 , 0 , 0 ] ] } ',
    **{name: body for name, (body, _, _) in BAD_DECODE_BODIES.items() if isinstance(body, str) and len(body) < 10_000},
    "true for a number": '{"codes": [[true, 0, 0]]}',
    "null": "null",
    "nothing": "",
}


@pytest.mark.parametrize("body", SHORTCUT_BODIES.values(), ids=SHORTCUT_BODIES.keys())
def test_the_decode_shortcut_answers_as_fastapis_route_byte_for_byte(client, body, monkeypatch):
    """``application/json`` takes the shortcut (shortcut.py); with a charset parameter the same body takes FastAPI's
    route. Status, content type and bytes agree; a body the shortcut cannot answer falls through to FastAPI."""
    taken = []
    shortcut_call = Shortcut.__call__

    async def counted(self, body, client_address):
        answer = await shortcut_call(self, body, client_address)
        taken.append(len(answer))
        return answer

    monkeypatch.setattr(Shortcut, "__call__", counted)
    short = client.post(DECODE, content=body, headers={"Content-Type": "application/json"})
    usual = client.post(DECODE, content=body, headers={"Content-Type": "application/json; charset=utf-8"})
    assert (short.status_code, short.headers["content-type"]) == (usual.status_code, usual.headers["content-type"])
    assert short.content == usual.content
    assert len(taken) == (short.status_code == 200)  # only the second request went FastAPI's way
    for header in ("x-content-type-options", "content-security-policy", "referrer-policy"):
        assert short.headers[header] == usual.headers[header]


def test_oversized_bodies_are_rejected_before_and_while_reading(client):
    declared = client.post(DECODE, content=b" " * (MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "larger than the limit" in declared.json()["detail"]

    def chunks():  # no Content-Length: the body is counted as it arrives
        for _ in range(MAX_BODY_BYTES // 50_000 + 2):
            yield b" " * 50_000

    streamed = client.post(DECODE, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and "larger than the limit" in streamed.json()["detail"]


BAD_REQUESTS = {
    "unknown run": ("post", "/api/runs/nope/decode", {"codes": [[0, 0, 0]]}, "unknown run 'nope'"),
    "run named by a path": ("get", "/api/runs/..%2F..%2Fetc/codes", None, "unknown run"),
    "run named by a folder": ("get", "/api/runs/%2Ftmp/codes", None, "unknown run"),
    "run named by a file": ("get", "/api/runs/model.safetensors/codes", None, "unknown run 'model.safetensors'"),
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
    "compass code of the wrong dimension": ("post", "/api/runs/vae/compass", {"code": [0, 0]}, "at least 3"),
    "compass code with NaN": ("post", "/api/runs/vae/compass", {"code": [0, "NaN", 0]}, "number"),
    "compass step of zero": ("post", "/api/runs/vae/compass", {"code": [0, 0, 0], "step": 0}, "greater than 0"),
    "compass step not finite": ("post", "/api/runs/vae/compass", '{"code": [0, 0, 0], "step": 1e400}', "finite"),
    "compass without a code": ("post", "/api/runs/vae/compass", {"step": 0.1}, "code: Field required"),
    "correspond to an unknown run": ("post", "/api/runs/vae/correspond", {"target": "nope", "codes": [[0, 0, 0]]},
                                     "'vae' or 'ae'"),
    "correspond with a wrong dimension": ("post", "/api/runs/vae/correspond", {"target": "ae", "codes": [[0, 0]]},
                                          "at least 3"),
    "correspond with too many codes": ("post", "/api/runs/vae/correspond",
                                       {"target": "ae", "codes": [[0, 0, 0]] * (MAX_BATCH + 1)},
                                       f"at most {MAX_BATCH}"),
    "correspond with an infinite code": ("post", "/api/runs/vae/correspond",
                                         '{"target": "ae", "codes": [[0, 0, 1e999]]}', "finite"),
    "alignment with an unknown run": ("get", "/api/runs/vae/alignment?target=..%2Fvae", None, "'vae' or 'ae'"),
    "alignment without a target": ("get", "/api/runs/vae/alignment", None, "target: Field required"),
    "verdict page of zero rows": ("get", "/api/runs/vae/verdicts?limit=0", None, "greater than or equal to 1"),
    "run info of an unknown run": ("get", "/api/runs/nope", None, "unknown run 'nope'"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_are_4xx_with_a_reason(client, case):
    method, path, body, reason = case
    if isinstance(body, str):  # raw JSON text, for numbers Python's json module cannot write
        response = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = client.request(method, path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert reason in detail_text(response)


def test_a_body_of_another_content_type_is_told_to_send_json(client):
    response = client.post("/api/runs/vae/decode", content=b'{"codes": [[0, 0, 0]]}',
                           headers={"Content-Type": "text/plain"})
    assert response.status_code == 422
    assert "Content-Type: application/json (got text/plain)" in detail_text(response)
    assert client.post("/api/runs/vae/decode", json={"codes": [[0, 0, 0]]}).status_code == 200


def test_the_openapi_description_is_for_users():
    from latent_atlas.explorer.app import API_DESCRIPTION

    assert "No logic of its own" not in API_DESCRIPTION and "application/json" in API_DESCRIPTION


@pytest.mark.parametrize("shape", [(3, 2), (2, 6), (1, 6), (6,), (2, 3, 1), (1, 2)])
def test_codes_of_the_wrong_width_are_rejected_not_reshaped(explorer, shape):
    with pytest.raises(AtlasError, match=r"codes must have shape \(B, 3\)"):
        explorer.session("vae").decode(np.zeros(shape, dtype=np.float32))


def test_a_wrong_width_request_in_a_batch_fails_alone(explorer):
    """A (1, 6) request must not come back as two decoded 3-D codes, nor spoil the requests batched with it."""
    session = explorer.session("vae")

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
        response = failing.get("/api/runs/vae")
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


@pytest.fixture
def served_process_settings():
    """``serve`` owns its process: it turns oneDNN off and freezes the heap after loads. Give them back to the
    test process, whose later tests train models (oneDNN doubles their speed)."""
    onednn = torch.backends.mkldnn.enabled
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = onednn
        gc.unfreeze()


def test_serve_on_loopback_rejects_other_host_names(runs_dir, client, monkeypatch, capsys, served_process_settings):
    served = []
    monkeypatch.setattr(uvicorn.Server, "run",
                        lambda server, sockets: served.append((server.config.app, sockets[0].getsockname()[1])))
    serve([runs_dir / "vae"], host="127.0.0.1", port=0, torch_threads=torch.get_num_threads())
    (app, port), = served
    assert f"http://127.0.0.1:{port}/  serving 1 run (vae)" in capsys.readouterr().out
    assert not torch.backends.mkldnn.enabled  # the server's small batches decode faster without it
    with TestClient(app) as served_client:
        assert served_client.get("/api/runs", headers={"Host": "evil.example"}).status_code == 400
        assert served_client.get("/api/runs", headers={"Host": f"127.0.0.1:{port}"}).status_code == 200
        assert served_client.get("/api/runs/vae", headers={"Host": f"127.0.0.1:{port}"}).status_code == 200
        assert gc.get_freeze_count() > 1000  # serve's app freezes what a load leaves alive


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
        np.testing.assert_allclose(batched["shape_residual"], single["shape_residual"], rtol=1e-6)
        for verdict in ("shape_ok", "in_range", "valid", "failure"):
            assert batched[verdict] == single[verdict]


def test_a_batchs_answer_columns_give_each_caller_its_own_rows(explorer):
    """The lists made once per batch, sliced per request, say what the request's own rows alone would."""
    session = explorer.session("vae")
    codes = np.random.default_rng(1).uniform(-3, 3, size=(6, 3)).astype(np.float32)
    batch = AnsweredRows.of(session.decode(codes))
    assert len({row[0] for row in batch.columns["factors"]}) == 6  # every row its own factors: a wrong slice shows
    for start, stop in [(0, 1), (2, 5), (5, 6)]:
        rows = batch.rows(start, stop)
        alone = AnsweredRows.of(session.decode(codes[start:stop]))
        sliced, own = decode_response(session, rows), decode_response(session, alone)
        assert sliced.images == own.images and sliced.failure == own.failure and sliced.valid == own.valid
        np.testing.assert_allclose(sliced.factors, own.factors, rtol=1e-6)
        np.testing.assert_array_equal(rows.decoded.images, batch.batch.images[start:stop])
        np.testing.assert_array_equal(rows.decoded.verdict.factors, batch.batch.verdict.factors[start:stop])


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


def test_batcher_waits_briefly_for_the_clients_it_just_answered():
    """Three clients answered together come back a few ms apart: their next requests still share one batch."""
    calls = []

    def work(rows: np.ndarray) -> Rows:
        calls.append(len(rows))
        return Rows(rows * 10)

    async def client(batcher: Batcher, source: str, delay: float) -> list[float]:
        first = await batcher.submit(np.array([[1.0]]), source=source)
        await asyncio.sleep(delay)  # the client handles its answer, then asks again
        second = await batcher.submit(np.array([[2.0]]), source=source)
        return [first.values.item(), second.values.item()]

    async def scenario(max_wait: float):
        batcher = Batcher(work, max_rows=64, thread=thread, max_wait=max_wait)
        return await asyncio.gather(*(client(batcher, name, delay)
                                      for name, delay in (("a", 0.0), ("b", 0.02), ("c", 0.04))))

    thread = ModelThread(torch_threads=1)
    try:
        assert asyncio.run(scenario(max_wait=1.0)) == [[10.0, 20.0]] * 3
        waited, calls[:] = calls[:], []
        asyncio.run(scenario(max_wait=0.0))
    finally:
        thread.close()
    assert waited == [3, 3]  # the second round waited 40 ms for "c", well within max_wait
    assert calls == [3, 1, 1, 1]  # without the wait each came back alone


def test_batcher_does_not_wait_for_a_lone_client_or_an_anonymous_one():
    calls = []

    def work(rows: np.ndarray) -> Rows:
        calls.append(len(rows))
        return Rows(rows * 10)

    async def scenario():
        batcher = Batcher(work, max_rows=64, thread=thread, max_wait=30.0)
        started = time.perf_counter()
        for i in range(3):  # anonymous requests are never waited for
            await batcher.submit(np.array([[float(i)]]))
        for i in range(3):  # a lone client asking again and again: nobody else to wait for
            await batcher.submit(np.array([[float(i)]]), source="only")
        return time.perf_counter() - started

    thread = ModelThread(torch_threads=1)
    try:
        elapsed = asyncio.run(scenario())
    finally:
        thread.close()
    assert calls == [1] * 6
    assert elapsed < 10.0  # a wait for anyone would take max_wait, 30 s


def test_batcher_answers_every_caller_when_a_result_cannot_be_split():
    class Unsplittable(Rows):
        def rows(self, start, stop):
            if start > 0:
                raise ValueError("cannot split")
            return Rows(self.values[start:stop])

    async def scenario():
        batcher = Batcher(lambda rows: Unsplittable(rows * 10), max_rows=64, thread=thread)
        calls = [batcher.submit(np.array([[float(i)]])) for i in range(3)]
        # a caller left waiting would hang: bound the wait
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=10)

    thread = ModelThread(torch_threads=1)
    try:
        first, *rest = asyncio.run(scenario())
    finally:
        thread.close()
    assert first.values.item() == 0.0
    assert all(isinstance(r, ValueError) for r in rest)


def test_the_served_explorer_freezes_what_a_load_leaves_alive(runs_dir):
    """``serve`` moves the loaded run's objects out of the collector's reach (no long full collections)."""
    gc.unfreeze()
    try:
        with TestClient(create_app([runs_dir / "vae"])) as plain:
            assert plain.get("/api/runs/vae").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app([runs_dir / "vae"], freeze_heap=True)) as frozen:
            assert frozen.get("/api/runs/vae").status_code == 200
            assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()


# ---------- loading ----------


def test_latent_dimension_five_gets_a_pca_view_and_five_coordinates(run5):
    app = create_app([run5.path], max_batch=MAX_BATCH)
    with TestClient(app) as five:
        info = five.get("/api/runs/vae5").json()
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


def test_runs_of_different_dimensions_are_served_together_each_with_its_own_schema(runs_dir, run5):
    app = create_app([runs_dir / "vae", run5.path], max_batch=MAX_BATCH)
    with TestClient(app) as both:
        assert [r["latent_dim"] for r in both.get("/api/runs").json()["runs"]] == [3, 5]
        assert both.post("/api/runs/vae/decode", json={"codes": [[0.1] * 3]}).status_code == 200
        assert both.post("/api/runs/vae5/decode", json={"codes": [[0.1] * 5]}).status_code == 200
        wrong = both.post("/api/runs/vae/decode", json={"codes": [[0.1] * 5]})
        assert wrong.status_code == 422 and "at most 3" in wrong.json()["message"]
        paths = both.get("/openapi.json").json()["paths"]
        assert "/api/runs/vae5/compass" in paths and "/api/runs/vae/compass" in paths


def test_loading_problems_are_atlas_errors_or_409s_on_first_use(runs_dir, tmp_path):
    with pytest.raises(AtlasError, match="not found"):
        create_app([tmp_path / "missing"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AtlasError, match="neither a run folder"):
        create_app([empty])
    broken = tmp_path / "broken"
    shutil.copytree(runs_dir, broken)
    (broken / "vae" / "model.safetensors").write_bytes(b"not a checkpoint")
    app = create_app([broken / "vae", broken / "ae"])  # only config.json is read at startup
    with TestClient(app) as lazy:
        assert lazy.get("/api/runs").status_code == 200
        failed = lazy.get("/api/runs/vae")
        assert failed.status_code == 409 and "safetensors" in failed.json()["detail"]
        assert lazy.post("/api/runs/vae/decode", json={"codes": [[0, 0, 0]]}).status_code == 409
        assert lazy.get("/api/runs/ae").status_code == 200  # the other run is unaffected


def test_nothing_is_loaded_until_a_run_is_used(runs_dir):
    app = create_app([runs_dir / "vae", runs_dir / "ae"], max_batch=MAX_BATCH)
    explorer = app.state.explorer
    with TestClient(app) as lazy:
        lazy.get("/api/runs")
        assert explorer.loaded("vae") is None and explorer.loaded("ae") is None
        lazy.post("/api/runs/ae/decode", json={"codes": [[0, 0, 0]]})
        assert explorer.loaded("ae") is not None and explorer.loaded("vae") is None


def test_the_explorer_never_writes_into_the_folders_it_reads(runs_dir, tmp_path):
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    (copy / "vae" / LATENTS_FILE).unlink(missing_ok=True)
    before = sorted((p.relative_to(copy), p.stat().st_mtime_ns) for p in copy.rglob("*"))
    app = create_app([copy / "vae", copy / "ae"], max_batch=MAX_BATCH)
    with TestClient(app) as reader:
        assert reader.post("/api/runs/vae/correspond", json={"target": "ae", "codes": [[0, 0, 0]]}).status_code == 200
        assert reader.get("/api/runs/vae/verdicts").status_code == 200
    assert sorted((p.relative_to(copy), p.stat().st_mtime_ns) for p in copy.rglob("*")) == before


def test_runs_on_one_dataset_share_one_model_independent_oracle(client, explorer):
    vae, ae = (client.get(f"/api/runs/{run}").json()["oracle"] for run in ("vae", "ae"))
    assert vae == ae  # one yardstick for both runs, whatever the models
    sessions = {run: explorer.session(run) for run in ("vae", "ae")}
    assert sessions["ae"].oracle is sessions["vae"].oracle
    assert sessions["vae"].oracle.shape_threshold == shape_threshold_for(sessions["vae"].dataset.config)


def test_a_saved_legacy_oracle_json_does_not_change_the_verdict(runs_dir, tmp_path, client):
    copy = tmp_path / "runs"
    shutil.copytree(runs_dir, copy)
    dataset = load_run(copy / "vae").load_dataset()
    write_json(copy / "vae" / ORACLE_FILE, {"threshold": 1e-7, "shape_threshold": 1e-7})  # a calibrated-era file
    session = Explorer.from_folders([copy / "vae"]).session("vae")
    assert session.oracle.shape_threshold == shape_threshold_for(dataset.config)
    codes = np.array([[0.0, 0.0, 0.0]], dtype=np.float32)
    expected = client.post("/api/runs/vae/decode", json={"codes": codes.tolist()}).json()
    assert session.decode(codes).verdict.valid.tolist() == expected["valid"]


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
