"""The explorer page in a real browser: Playwright drives Debian's headless Chromium against a live server.

One server and one browser serve the whole module. The server reads a study-shaped folder (``data/``,
``oracle/``, ``runs/gaussian-{vae,ae}-s0``) plus one run folder named directly (a copy of the AE with its own
copy of the dataset, so no study threshold applies to it). The runs are trained here (30 short epochs on the
tiny dataset, a few seconds) rather than taken from ``trained_runs``: those 2-epoch runs decode every code to
the same image, so a click could not be seen to change anything. These small models' decodes are blurry (shape
residual about 0.2), so the study's ``oracle/tiny.json`` fixes a lenient shape threshold of 0.5, as a study
writes its own: the compass then has valid decodes to differentiate; the directly named copy keeps the
benchmark's 0.063 for its 12x12 grid, where the compass must say that it has nothing to show.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import math
import shutil
import struct
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn

from latent_atlas.explorer import create_app
from latent_atlas.explorer.app import listening_socket, trusted_hosts
from latent_atlas.io import read_json, write_json
from latent_atlas.training import train

from .browser import launch_chromium
from .conftest import tiny_model_config, tiny_train_config

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
STUDY_THRESHOLD = 0.5
VAE, AE, COPY = "gaussian-vae-s0", "gaussian-ae-s0", "ae-copy"


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """As in ``serve``: with other work on the 2 cores, a second intra-op thread makes torch tens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_dataset) -> list[Path]:
    """[the study folder, the directly named run folder]."""
    root = tmp_path_factory.mktemp("browser")
    study = root / "study"
    (study / "data").mkdir(parents=True)
    tiny_dataset.save(study / "data" / "tiny.npz")
    write_json(study / "oracle" / "tiny.json", {"shape_threshold": STUDY_THRESHOLD})
    train_config = tiny_train_config(epochs=30, learning_rate=0.01, early_stopping_patience=100)
    models = {VAE: tiny_model_config(kind="vae", beta=0.05), AE: tiny_model_config(kind="ae")}
    for name, model in models.items():
        train(tiny_dataset, study / "data" / "tiny.npz", model, train_config, study / "runs" / name, progress=False)
    elsewhere = root / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    shutil.copy(study / "data" / "tiny.npz", elsewhere / "data" / "tiny.npz")
    shutil.copytree(study / "runs" / AE, elsewhere / "runs" / COPY)
    config = read_json(elsewhere / "runs" / COPY / "config.json")
    config["data"]["path"] = "../../data/tiny.npz"
    write_json(elsewhere / "runs" / COPY / "config.json", config)
    return [study, elsewhere / "runs" / COPY]


@pytest.fixture(scope="module")
def server_url(folders):
    """The explorer on a free loopback port, served by uvicorn in a thread as ``serve`` would (loopback Host
    names only); shut down after the module."""
    sock = listening_socket("127.0.0.1", 0)
    app = create_app(folders, allowed_hosts=trusted_hosts("127.0.0.1", sock.getsockname()[0]))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the explorer server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as chromium:  # fails, never skips, without Debian's Chromium
        yield chromium


@pytest.fixture(scope="module")
def context(browser):
    """One browser context for the module's pages, so plotly.js is fetched and parsed from the cache after the first."""
    shared = browser.new_context(viewport={"width": 1400, "height": 1700}, accept_downloads=True)
    yield shared
    shared.close()


class Page:
    """A fresh page that records console errors and every URL it requests; ``check`` asserts neither went wrong."""

    def __init__(self, context, server_url: str):
        self.server_url = server_url
        self.page = context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))

    def check(self) -> None:
        assert self.errors == []
        outside = [url for url in self.requests if not url.startswith(self.server_url + "/")]
        assert outside == [], f"requests outside the app: {outside}"


@pytest.fixture()
def session(context, server_url):
    opened = Page(context, server_url)
    yield opened
    opened.page.close()
    opened.check()


def api_get(server_url: str, path: str) -> dict:
    with urllib.request.urlopen(f"{server_url}{path}", timeout=30) as response:
        return json.loads(response.read())


def api_post(server_url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{server_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def decode_via_api(server_url: str, run: str, code: list[float]) -> dict:
    return api_post(server_url, f"/api/runs/{run}/decode", {"codes": [code]})


def recovered(server_url: str, run: str, code: list[float]) -> dict[str, float]:
    answer = decode_via_api(server_url, run, code)
    return dict(zip(answer["factor_names"], answer["factors"][0]))


def shown_factors(page, panel: str = "recovered-factors") -> dict[str, str]:
    """The recovered-factor column of a decoded panel's table, as shown."""
    rows = page.locator(f"#{panel} tbody tr")
    return {rows.nth(i).locator("td").nth(0).inner_text(): rows.nth(i).locator("td").nth(1).inner_text()
            for i in range(rows.count())}


def expected_factors(answer: dict) -> dict[str, str]:
    shown = {name: f"{value:.3f}" for name, value in zip(answer["factor_names"], answer["factors"][0])}
    return {**shown, "residual": f"{answer['residual'][0]:.3f}"}


def pixels(page, canvas_id: str) -> str:
    return page.evaluate(f"document.getElementById('{canvas_id}').toDataURL()")


def wait_until(page, expression: str) -> None:
    """Poll a JavaScript expression until it is true (Playwright's wait_for_function needs eval, which the
    page's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {expression}")
        page.wait_for_timeout(25)


def version(page) -> int:
    return page.evaluate("window.atlasExplorer.state.version")


def compass_version(page) -> int:
    return page.evaluate("window.atlasExplorer.state.compassVersion")


def wait_for_version(page, at_least: int) -> None:
    wait_until(page, f"Number(document.getElementById('decoded-image').dataset.version) >= {at_least}")


def wait_for_compass(page, at_least: int) -> None:
    wait_until(page, f"window.atlasExplorer.state.compassVersion >= {at_least} && "
                     "JSON.stringify(window.atlasExplorer.state.compass.code) === "
                     "JSON.stringify(window.atlasExplorer.state.code)")


def current_code(page) -> list[float]:
    return page.evaluate("window.atlasExplorer.state.code")


def open_explorer(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
    wait_for_version(page, 1)


def emit_click(page, index: int) -> None:
    page.evaluate(f"document.getElementById('scatter').emit('plotly_click', "
                  f"{{points: [{{curveNumber: 0, pointNumber: {index}}}]}})")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


# ---------- tests ----------


def test_the_live_server_answers_only_loopback_host_names(server_url):
    """What a DNS-rebinding page would send: its own domain in the Host header, to 127.0.0.1."""
    port = int(server_url.rsplit(":", 1)[1])
    for host, status in (("evil.example", 400), (f"evil.example:{port}", 400), (f"localhost:{port}", 200),
                         (f"127.0.0.1:{port}", 200)):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            connection.request("GET", "/api/runs", headers={"Host": host})
            response = connection.getresponse()
            response.read()
        finally:
            connection.close()
        assert response.status == status, host
        assert response.getheader("X-Content-Type-Options") == "nosniff"


def test_page_decodes_on_click_slider_and_plane(server_url, session, tmp_path):
    page = session.page
    open_explorer(page, server_url)

    # the study's default pair: its VAE, compared with its AE through the alignment, whose held-out error is shown
    assert page.evaluate("[window.atlasExplorer.state.run, window.atlasExplorer.state.other]") == [VAE, AE]
    alignment = api_get(server_url, f"/api/runs/{VAE}/alignment?target={AE}")
    note = page.locator("#alignment-note")
    text, score = note.inner_text(), alignment["score"]
    assert alignment["method"] in text and f"R² {score['r2']:.4f}" in text
    assert f"median error {score['median_error']:.2f} code spacings" in text and f"({score['n']} test images)" in text
    support = api_post(server_url, f"/api/runs/{VAE}/correspond",
                       {"target": AE, "codes": [current_code(page)]})["support"][0]
    assert f"this code is {support:.2f} spacings from {VAE}'s nearest code" in text
    assert float(note.get_attribute("data-median-error")) == pytest.approx(score["median_error"])
    assert page.locator("#scatter .main-svg").count() > 0 and page.locator("#scatter canvas").count() > 0
    assert page.evaluate("document.getElementById('scatter').data[0].x.length") == 36
    assert page.locator("#slider-0, #slider-1, #slider-2").count() == 3

    # hovering a point (through plotly's own hover event) shows its original image and true factors
    page.evaluate("document.getElementById('scatter')"
                  ".emit('plotly_hover', {points: [{curveNumber: 0, pointNumber: 7}]})")
    wait_until(page, "document.getElementById('hover-factors').innerText.includes('image #7')")
    assert "var_x = " in page.locator("#hover-factors").inner_text()

    # clicking a point decodes its code, and the AE decodes the corresponding point
    before = pixels(page, "decoded-image"), pixels(page, "decoded-image-2")
    far_index = page.evaluate("""(() => {
        const s = window.atlasExplorer.state, codes = s.data.get(s.run).codes;
        const d = codes.map(c => c.reduce((t, v, i) => t + (v - s.code[i]) ** 2, 0));
        return d.indexOf(Math.max(...d)); })()""")
    seen = version(page)
    emit_click(page, far_index)
    wait_for_version(page, seen + 1)
    clicked = current_code(page)
    wait_until(page, "document.querySelector('#recovered-factors thead').innerText.includes('true')")
    assert shown_factors(page) == expected_factors(decode_via_api(server_url, VAE, clicked))
    corresponding = api_post(server_url, f"/api/runs/{VAE}/correspond", {"target": AE, "codes": [clicked]})
    assert shown_factors(page, "recovered-factors-2") == expected_factors(corresponding["decoded"])
    assert page.locator("#validity").inner_text() in ("valid heatmap", "not a valid heatmap")
    oracle_note = page.locator("#validity").get_attribute("title")
    assert "shape residual" in oracle_note and "oracle/tiny.json" in oracle_note
    after_click = pixels(page, "decoded-image"), pixels(page, "decoded-image-2")
    assert after_click != before

    # moving a slider with the keyboard decodes again
    seen = version(page)
    page.focus("#slider-1")
    # to the far end: a code at an end of the range may read a rounding away from it (-2.11313152313232 > min)
    nearer_minimum = page.evaluate(
        "(s => Number(s.value) - Number(s.min) < Number(s.max) - Number(s.value))(document.getElementById('slider-1'))")
    page.keyboard.press("End" if nearer_minimum else "Home")
    wait_for_version(page, seen + 1)
    wait_until(page, "document.querySelector('#recovered-factors thead').innerText.indexOf('true') < 0")
    slid = current_code(page)
    assert slid[1] != clicked[1] and slid[0] == clicked[0]
    assert shown_factors(page) == expected_factors(decode_via_api(server_url, VAE, slid))

    # a real mouse click on an empty corner of the slice plane decodes there
    seen = version(page)
    box = page.locator("#slice-plane").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.95, box["y"] + box["height"] * 0.05)
    wait_for_version(page, seen + 1)
    corner = current_code(page)
    assert corner[0] > slid[0] and corner[1] > slid[1] and corner[2] == slid[2]

    # a straight path: a strip of decoded images per run and the recovered-factor curves
    page.click("#path-run")
    page.wait_for_selector("#path-strip-2 canvas", timeout=TIMEOUT_MS)
    assert page.locator("#path-strip canvas").count() == 12
    assert page.locator("#path-factors .main-svg").count() > 0
    legend = page.evaluate("document.getElementById('path-factors').data.filter((t) => t.showlegend !== false)"
                           ".map((t) => [t.name, t.marker.symbol])")
    assert sorted(legend) == sorted([[VAE, "circle"], [AE, "circle"]])  # one plain entry per run

    page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
    shutil.copy(tmp_path / "explorer.png", Path(tempfile.gettempdir()) / "explorer.png")


def test_a_path_request_that_fails_clears_the_previous_path(server_url, session):
    page = session.page
    open_explorer(page, server_url)
    page.click("#path-run")
    page.wait_for_selector("#path-strip-2 canvas", timeout=TIMEOUT_MS)
    page.route("**/paths", lambda route: route.fulfill(status=422, content_type="application/json",
                                                       body='{"detail": "no path here"}'))
    page.click("#path-run")
    wait_until(page, "document.getElementById('status').textContent.includes('Path failed')")
    assert page.locator("#path-strips canvas").count() == 0
    assert page.evaluate("window.atlasExplorer.state.path") is None
    page.unroute("**/paths")
    assert session.errors == ["Failed to load resource: the server responded with a status of 422 "
                              "(Unprocessable Entity)"]  # the browser's own note on the refused request
    session.errors.clear()


def test_a_study_folder_lists_its_runs_any_two_compare_and_verdicts_colour_the_scatter(server_url, session):
    page = session.page
    open_explorer(page, server_url)
    listing = api_get(server_url, "/api/runs")["runs"]
    rows = page.locator("#runs-table tbody tr")
    assert rows.count() == len(listing) == 3
    for i, run in enumerate(listing):
        cells = [rows.nth(i).locator("td").nth(j).inner_text() for j in range(7)]
        assert cells[0] == run["id"] and cells[2] == run["dataset_kind"] and cells[3] == run["kind"].upper()
        assert cells[4] == str(run["seed"]) and cells[6] == str(run["latent_dim"])
    assert {r["id"] for r in listing} == {VAE, AE, COPY}
    assert page.locator("#run-a option").count() == 3

    # compare with the directly named copy instead, without restarting anything
    seen = version(page)
    page.select_option("#run-b", COPY)
    wait_for_version(page, seen + 1)
    assert page.locator("#decoded-panels h3").nth(1).inner_text().startswith(COPY)
    assert page.evaluate("window.atlasExplorer.state.other") == COPY
    wait_until(page, f"window.location.hash.includes('other={COPY}')")
    # and show the AE itself, compared with the VAE
    seen = version(page)
    page.locator(f"#runs-table button[data-run='{AE}']").click()
    wait_for_version(page, seen + 1)
    assert page.evaluate("[window.atlasExplorer.state.run, window.atlasExplorer.state.other]") == [AE, COPY]
    assert page.locator("#run-a").input_value() == AE

    # its scatter coloured by the oracle's verdict on each code's reconstruction
    page.select_option("#colour-by", "valid")
    wait_until(page, "document.getElementById('scatter').dataset.colour === 'valid'")
    colours = page.evaluate("Array.from(document.getElementById('scatter').data[0].marker.color)")
    assert colours == [int(v) for v in api_get(server_url, f"/api/runs/{AE}/verdicts")["valid"]]
    # a yes/no colouring: two blocks of colour, each value in the middle of its block, not ends of a gradient
    marker = page.evaluate("(() => { const m = document.getElementById('scatter').data[0].marker;"
                           " return [m.cmin, m.cmax, m.colorscale]; })()")
    cmin, cmax, scale = marker
    positions = [(value - cmin) / (cmax - cmin) for value in (0, 1)]
    colour_at = {position: colour for position, colour in scale}
    assert [stop for stop, _ in scale] == [0, 0.5, 0.5, 1] and colour_at[0] != colour_at[1]
    assert positions[0] < 0.5 < positions[1]
    assert "reconstructions pass" in page.locator("#status").inner_text()
    assert urllib.parse.unquote(page.url).count("colour=valid") == 1


def test_the_last_of_two_quick_run_choices_wins_everywhere(server_url, session):
    """The first choice's codes arrive only after the second choice has been shown (delayed here): the page must
    end on the second, in every panel, not on whichever load finished last."""
    page = session.page
    open_explorer(page, server_url)

    def slow(route):
        time.sleep(1.5)
        route.continue_()

    page.route(f"**/api/runs/{COPY}/codes*", slow)
    page.select_option("#run-a", COPY)
    page.select_option("#run-a", AE)
    wait_until(page, f"window.atlasExplorer.state.run === '{AE}'")
    page.wait_for_timeout(2500)  # the delayed choice has finished loading by now
    wait_until(page, "document.getElementById('status').textContent === ''")
    assert page.evaluate("window.atlasExplorer.state.run") == AE
    assert page.locator("#run-a").input_value() == AE
    assert page.locator("#decoded-panels h3").nth(0).inner_text().startswith(AE)
    assert f"run={AE}" in urllib.parse.unquote(page.url)
    page.unroute(f"**/api/runs/{COPY}/codes*")


def test_a_link_to_an_unknown_run_says_so(server_url, session):
    page = session.page
    page.goto(f"{server_url}/#run=nope&other={AE}")
    page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
    wait_until(page, "document.getElementById('status').textContent.includes('nope')")
    assert "does not serve" in page.locator("#status").inner_text()

    # hand-edited values the page cannot use are named, not read as zeros or silently dropped
    page.goto("about:blank")
    page.goto(f"{server_url}/#run={VAE}&other={AE}&code=%2C%2C&slice=1%2C1")
    page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
    wait_until(page, "document.getElementById('status').textContent.includes('could not be used')")
    message = page.locator("#status").inner_text()
    assert "code (3 numbers expected)" in message and "slice (two different axes" in message
    info = api_get(server_url, f"/api/runs/{VAE}")
    assert page.evaluate("window.atlasExplorer.state.code") == info["code_median"]  # not (0, 0, 0)
    assert page.evaluate("window.atlasExplorer.state.sliceAxes") == [0, 1]


def test_compass_arrows_appear_and_stepping_moves_the_intended_factor(server_url, session):
    page = session.page
    open_explorer(page, server_url)
    wait_for_compass(page, 1)
    compass = page.evaluate("window.atlasExplorer.state.compass")
    assert compass["status"] == "ok" and compass["units"] == ["log var_x", "log var_y", "rho"]
    assert int(page.locator("#slice-plane").get_attribute("data-arrows")) >= 1
    labels = json.loads(page.locator("#slice-plane").get_attribute("data-labels"))
    assert len(labels) == int(page.locator("#slice-plane").get_attribute("data-arrows"))
    assert not any(_boxes_overlap(p, q) for i, p in enumerate(labels) for q in labels[i + 1:])
    assert page.locator("#compass-table tbody tr").count() == 3
    first_row = page.locator("#compass-table tbody tr").nth(0).locator("td")
    assert first_row.nth(1).inner_text() == f"{compass['value'][0]:.3f}"

    for factor, sign in (("rho", "+"), ("rho", "-"), ("var_x", "+")):
        before = recovered(server_url, VAE, current_code(page))[factor]
        seen, seen_compass = version(page), compass_version(page)
        page.click(f"#compass-table button[data-step='{factor}{sign}']")
        wait_for_version(page, seen + 1)
        wait_for_compass(page, seen_compass + 1)
        after = recovered(server_url, VAE, current_code(page))[factor]
        assert (after > before) if sign == "+" else (after < before), (factor, sign, before, after)
        assert page.evaluate("window.atlasExplorer.state.compass.status") != "shape"


def _boxes_overlap(p, q) -> bool:
    return p["x"] < q["x"] + q["w"] and q["x"] < p["x"] + p["w"] and p["y"] < q["y"] + q["h"] and q["y"] < p["y"] + p["h"]


def test_labels_of_arrows_pointing_alike_do_not_overlap(server_url, session):
    page = session.page
    open_explorer(page, server_url)
    arrows = [{"x": 100, "y": 100, "angle": 0.0, "width": 30}, {"x": 101, "y": 100, "angle": 0.03, "width": 40},
              {"x": 100, "y": 99, "angle": -0.02, "width": 35}, {"x": 60, "y": 60, "angle": 3.1, "width": 30}]
    boxes = page.evaluate("(arrows) => window.atlasExplorer.placeLabels(arrows)", arrows)
    assert not any(_boxes_overlap(p, q) for i, p in enumerate(boxes) for q in boxes[i + 1:])
    assert boxes[0]["cx"] == 110 and boxes[0]["cy"] == 104  # the first just beyond its tip, where it always was
    assert abs(boxes[3]["cx"] - (60 + 10 * math.cos(3.1))) < 1e-9  # one alone is not moved


def test_the_compass_says_so_where_decodes_are_not_valid(server_url, session):
    page = session.page
    open_explorer(page, f"{server_url}/#run={COPY}&other=none")
    wait_for_compass(page, 1)
    assert page.locator("#compass-card").get_attribute("data-status") == "shape"
    assert "no compass here" in page.locator("#compass-status").inner_text()
    assert page.locator("#slice-plane").get_attribute("data-arrows") == "0"
    assert page.locator("#compass-table button[data-step='rho+']").is_disabled()
    assert page.locator("#alignment-note").count() == 0  # nothing compared


def test_the_page_state_round_trips_through_the_url(server_url, session):
    """A reload keeps nothing but the URL (the page's state lives in its fragment), so it is what a bookmark or a
    shared link gives."""
    page = session.page
    open_explorer(page, server_url)
    for select, run in (("#run-a", AE), ("#run-b", COPY)):  # the AE, compared with the copy
        seen = version(page)
        page.select_option(select, run)
        wait_for_version(page, seen + 1)
    page.select_option("#slice-b", "2")
    page.select_option("#colour-by", "var_x")
    seen = version(page)
    box = page.locator("#slice-plane").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4)
    wait_for_version(page, seen + 1)
    page.click("#path-set-a")
    page.fill("#path-n", "7")
    page.dispatch_event("#path-n", "change")
    page.click("#path-run")
    page.wait_for_selector("#path-strip canvas", timeout=TIMEOUT_MS)
    wait_until(page, "window.location.hash.includes('sampled=1') && window.location.hash.includes('n=7')")

    def snapshot(p) -> dict:
        return p.evaluate("""(() => { const s = window.atlasExplorer.state;
            return {run: s.run, other: s.other, code: s.code, slice: s.sliceAxes, colour: s.colour, ends: s.pathEnds,
                    points: s.path && s.path.points, kind: s.path && s.path.kind}; })()""")

    saved = snapshot(page)
    assert saved["run"] == AE and saved["other"] == COPY
    assert saved["slice"] == [0, 2] and saved["colour"] == "var_x" and len(saved["points"]) == 7
    page.reload()
    page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)
    page.wait_for_selector("#path-strip canvas", timeout=TIMEOUT_MS)
    restored = snapshot(page)
    assert restored["run"] == saved["run"] and restored["other"] == saved["other"]
    assert restored["slice"] == [0, 2] and restored["colour"] == "var_x" and restored["kind"] == "line"
    assert page.locator("#slice-b").input_value() == "2" and page.locator("#colour-by").input_value() == "var_x"
    np.testing.assert_allclose(restored["code"], saved["code"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(restored["ends"]["a"], saved["ends"]["a"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(restored["points"], saved["points"], rtol=1e-5, atol=1e-5)
    assert page.locator("#path-strip canvas").count() == 7


def test_a_scatter_click_that_plotly_repeats_while_rendering_sets_the_end_once(server_url, session):
    """Plotly's 3-D scene emits plotly_click from its render loop while the button is down, so a restyle made by the
    handler renders and emits it again. Emulated here: for 250 ms after the press, every restyle of the scatter
    re-emits the click. Handled inside the dispatch this overflowed the stack; handled later but every time, the
    repeat would move the code after "set A"."""
    page = session.page
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    open_explorer(page, server_url)
    code_before = current_code(page)
    page.evaluate("""() => {
      const original = Plotly.restyle, gd = document.getElementById('scatter');
      window.repeatedClicks = 0;
      window.buttonUpAt = 0;
      window.restyledInsideClick = 0;
      let dispatching = 0;
      const emit = gd.emit.bind(gd);
      gd.emit = (name, data) => {
        dispatching += name === 'plotly_click';
        try { return emit(name, data); } finally { dispatching -= name === 'plotly_click'; }
      };
      Plotly.restyle = function (...args) {
        if (args[0] === 'scatter' && dispatching) window.restyledInsideClick += 1;
        const result = original.apply(this, args);
        if (args[0] === 'scatter' && performance.now() < window.buttonUpAt && window.restyledInsideClick < 50) {
          window.repeatedClicks += 1;
          gd.emit('plotly_click', {points: [{curveNumber: 0, pointNumber: window.repeatClick}]});
        }
        return result;
      };
    }""")
    page.check("input[name='click-target'][value='a']")
    page.evaluate("window.repeatClick = 7; window.buttonUpAt = performance.now() + 250")
    emit_click(page, 7)
    wait_until(page, "window.atlasExplorer.state.clickTarget === 'code'")
    page.wait_for_timeout(300)
    assert errors == []
    assert page.evaluate("window.repeatedClicks") >= 1  # the emulation did re-emit
    assert page.evaluate("window.restyledInsideClick") == 0  # nothing renders inside Plotly's dispatch
    state = page.evaluate("({ends: window.atlasExplorer.state.pathEnds, codes: window.atlasExplorer.state.data"
                          ".get(window.atlasExplorer.state.run).codes})")
    assert state["ends"]["a"] == state["codes"][7]
    assert current_code(page) == code_before  # the repeats did not also pick the point as the code


def test_a_click_on_the_scatter_or_the_plane_sets_a_path_end(server_url, session):
    page = session.page
    open_explorer(page, server_url)
    code_before = current_code(page)
    page.check("input[name='click-target'][value='a']")
    emit_click(page, 5)
    wait_until(page, "window.atlasExplorer.state.clickTarget === 'code'")
    state = page.evaluate("({ends: window.atlasExplorer.state.pathEnds, codes: window.atlasExplorer.state.data"
                          ".get(window.atlasExplorer.state.run).codes})")
    assert state["ends"]["a"] == state["codes"][5]
    assert current_code(page) == code_before  # the click set A, not the current code
    assert page.locator("#path-a").inner_text() == "(" + ", ".join(f"{v:.2f}" for v in state["codes"][5]) + ")"
    assert page.evaluate("document.getElementById('scatter').data[3].text").count("A") == 1

    page.check("input[name='click-target'][value='b']")
    box = page.locator("#slice-plane").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.7)
    wait_until(page, "window.atlasExplorer.state.clickTarget === 'code'")
    end_b = page.evaluate("window.atlasExplorer.state.pathEnds.b")
    assert end_b[2] == code_before[2] and (end_b[0], end_b[1]) != (code_before[0], code_before[1])
    assert current_code(page) == code_before
    page.click("#path-run")
    page.wait_for_selector("#path-strip canvas", timeout=TIMEOUT_MS)
    points = page.evaluate("window.atlasExplorer.state.path.points")
    np.testing.assert_allclose(points[0], state["codes"][5], atol=1e-9)
    np.testing.assert_allclose(points[-1], end_b, atol=1e-9)


def test_the_path_and_the_decoded_image_export_as_png_and_csv(server_url, session):
    page = session.page
    open_explorer(page, server_url)
    page.click("#path-run")
    page.wait_for_selector("#path-strip-2 canvas", timeout=TIMEOUT_MS)
    path = page.evaluate("window.atlasExplorer.state.path")

    with page.expect_download() as got:
        page.click("#export-csv")
    assert got.value.suggested_filename == "path-line.csv"
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert len(rows) == len(path["points"]) == 12
    for n, row in enumerate(rows):
        assert int(row["step"]) == n
        np.testing.assert_allclose([float(row[f"{VAE}:z{i}"]) for i in range(3)], path["points"][n])
        np.testing.assert_allclose([float(row[f"{AE}:z{i}"]) for i in range(3)], path["mapped"]["codes"][n])
        for k, run in enumerate((VAE, AE)):
            decoded = path["decoded"][k]
            np.testing.assert_allclose([float(row[f"{run}:{name}"]) for name in decoded["factor_names"]],
                                       decoded["factors"][n])
            assert row[f"{run}:valid"] == str(int(decoded["valid"][n]))

    with page.expect_download() as got:
        page.click("#export-strip")
    width, height = png_size(Path(got.value.path()).read_bytes())
    assert got.value.suggested_filename == "path-line.png"
    # 12 images a row, 2 rows, x4, a 6 px gap, a 16 px label above and a 14 px step number under each row
    assert width == 6 + 12 * (12 * 4 + 6) and height == 6 + 2 * (16 + 12 * 4 + 14 + 6)
    from PIL import Image

    strip = np.asarray(Image.open(got.value.path()).convert("RGB")).astype(int)
    for k in range(2):
        top = 6 + k * (16 + 48 + 14 + 6) + 16
        framed = [tuple(strip[top + 24, 6 + n * 54 - 2]) == (214, 39, 40) for n in range(12)]
        assert framed == [not v for v in path["decoded"][k]["valid"]]  # a red frame exactly round the invalid ones

    with page.expect_download() as got:
        page.click("#export-decoded")
    assert got.value.suggested_filename == f"decoded-{VAE}.png"
    assert png_size(Path(got.value.path()).read_bytes()) == (6 + 12 * 8 + 6, 6 + 16 + 12 * 8 + 6)
