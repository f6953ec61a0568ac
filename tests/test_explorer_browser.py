"""The explorer page in a real browser: Playwright drives Debian's headless Chromium against a live server.

The runs are trained here (a VAE and an AE, 30 short epochs on the tiny dataset, about a second) rather than
taken from ``trained_runs``: those 2-epoch runs decode every code to the same image, so a click could not
be seen to change anything.
"""

from __future__ import annotations

import http.client
import json
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import torch
import uvicorn

from latent_atlas.explorer import create_app
from latent_atlas.explorer.app import listening_socket, trusted_hosts
from latent_atlas.training import train

from .browser import launch_chromium
from .conftest import tiny_model_config, tiny_train_config

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """As in ``serve``: with other work on the 2 cores, a second intra-op thread makes torch tens of times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def lively_runs(tmp_path_factory, tiny_dataset) -> list[Path]:
    root = tmp_path_factory.mktemp("browser")
    tiny_dataset.save(root / "tiny.npz")
    train_config = tiny_train_config(epochs=30, learning_rate=0.01, early_stopping_patience=100)
    models = {"vae": tiny_model_config(kind="vae", beta=0.05), "ae": tiny_model_config(kind="ae")}
    return [train(tiny_dataset, root / "tiny.npz", model, train_config, root / kind, progress=False).run.path
            for kind, model in models.items()]


@pytest.fixture(scope="module")
def server_url(lively_runs):
    """The explorer on a free loopback port, served by uvicorn in a thread as ``serve`` would (loopback Host
    names only); shut down after the module."""
    sock = listening_socket("127.0.0.1", 0)
    app = create_app(lively_runs, allowed_hosts=trusted_hosts("127.0.0.1", sock.getsockname()[0]))
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


def decode_via_api(server_url: str, run: str, code: list[float]) -> dict:
    request = urllib.request.Request(f"{server_url}/api/runs/{run}/decode", data=json.dumps({"codes": [code]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


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


def wait_for_version(page, version: int) -> None:
    wait_until(page, f"Number(document.getElementById('decoded-image').dataset.version) >= {version}")


def current_code(page) -> list[float]:
    return page.evaluate("window.atlasExplorer.state.code")


def test_page_decodes_on_click_slider_and_plane(server_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1500})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(server_url)
        page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT_MS)

        # the scatter rendered: plotly's svg layer and its WebGL canvas, with one marker per code
        assert page.locator("#scatter .main-svg").count() > 0
        assert page.locator("#scatter canvas").count() > 0
        assert page.evaluate("document.getElementById('scatter').data[0].x.length") == 36
        assert page.locator("#slider-0, #slider-1, #slider-2").count() == 3
        wait_for_version(page, 1)

        # hovering a point (through plotly's own hover event) shows its original image and true factors
        page.evaluate("document.getElementById('scatter')"
                      ".emit('plotly_hover', {points: [{curveNumber: 0, pointNumber: 7}]})")
        wait_until(page, "document.getElementById('hover-factors').innerText.includes('image #7')")
        assert "var_x = " in page.locator("#hover-factors").inner_text()

        # clicking a point (through plotly's own click event) decodes that point's code in both runs
        before = pixels(page, "decoded-image"), pixels(page, "decoded-image-2")
        far_index = page.evaluate("""(() => {
            const s = window.atlasExplorer.state, codes = s.data.get(s.scatterRun).codes;
            const d = codes.map(c => c.reduce((t, v, i) => t + (v - s.code[i]) ** 2, 0));
            return d.indexOf(Math.max(...d)); })()""")
        page.evaluate(f"document.getElementById('scatter').emit('plotly_click', "
                      f"{{points: [{{curveNumber: 0, pointNumber: {far_index}}}]}})")
        wait_for_version(page, 2)
        clicked = current_code(page)
        wait_until(page, "document.querySelector('#recovered-factors thead').innerText.includes('true')")
        assert shown_factors(page) == expected_factors(decode_via_api(server_url, "vae", clicked))
        assert shown_factors(page, "recovered-factors-2") == expected_factors(decode_via_api(server_url, "ae", clicked))
        assert page.locator("#validity").inner_text() in ("valid heatmap", "not a valid heatmap")
        oracle_note = page.locator("#validity").get_attribute("title")
        assert "shape residual" in oracle_note and "corruption benchmark" in oracle_note
        after_click = pixels(page, "decoded-image"), pixels(page, "decoded-image-2")
        assert after_click != before

        # moving a slider with the keyboard decodes again
        page.focus("#slider-1")
        page.keyboard.press("Home")
        wait_for_version(page, 3)
        wait_until(page, "document.querySelector('#recovered-factors thead').innerText.indexOf('true') < 0")
        slid = current_code(page)
        assert slid[1] != clicked[1] and slid[0] == clicked[0]
        assert shown_factors(page) == expected_factors(decode_via_api(server_url, "vae", slid))
        assert (pixels(page, "decoded-image"), pixels(page, "decoded-image-2")) != after_click

        # a real mouse click on an empty corner of the slice plane decodes there
        box = page.locator("#slice-plane").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.95, box["y"] + box["height"] * 0.05)
        wait_for_version(page, 4)
        corner = current_code(page)
        assert corner[0] > slid[0] and corner[1] > slid[1] and corner[2] == slid[2]

        # a straight path: a strip of decoded images per run and the recovered-factor curves
        page.click("#path-run")
        page.wait_for_selector("#path-strip-2 canvas", timeout=TIMEOUT_MS)
        assert page.locator("#path-strip canvas").count() == 12
        assert page.locator("#path-factors .main-svg").count() > 0

        page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
        shutil.copy(tmp_path / "explorer.png", Path(tempfile.gettempdir()) / "explorer.png")
    finally:
        page.close()

    assert errors == []
    outside = [url for url in requests if not url.startswith(server_url + "/")]
    assert outside == [], f"requests outside the app: {outside}"
