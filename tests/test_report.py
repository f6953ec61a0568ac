"""The study end to end on tiny data, and the report it writes: sections, figures, numbers traced to files."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from latent_atlas.cli import main
from latent_atlas.report.html import format_number, lookup
from latent_atlas.study import run_study, study_config_from

SECTIONS = ("summary", "data", "oracle", "models", "reconstruction", "latent", "directions", "holes", "four",
            "beyond", "reproduce")
STUDY_TOML = {
    "data": {"grid_size": 16, "var_x": {"start": 0.1, "stop": 4.9, "step": 0.8},
             "var_y": {"start": 0.1, "stop": 4.9, "step": 0.8}, "rho": {"start": -0.9, "stop": 0.9, "step": 0.3}},
    "model": {"channels": [4, 8], "hidden_dims": [32]},
    "train": {"epochs": 2, "batch_size": 32},
    "study": {"latent_dims": [2, 4]},
}


class NumberSpans(HTMLParser):
    """Collects every <span class="num"> with its attributes and text."""

    def __init__(self):
        super().__init__()
        self.spans: list[dict] = []
        self._open: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "span" and attrs.get("class") == "num":
            self._open = {**attrs, "text": ""}

    def handle_data(self, data):
        if self._open is not None:
            self._open["text"] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.spans.append(self._open)
            self._open = None


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    output = tmp_path_factory.mktemp("study")
    result = run_study(study_config_from(STUDY_TOML), output, progress=False)
    return result


def test_report_has_every_section_and_figure(tiny_study):
    html = tiny_study.report.read_text()
    for section in SECTIONS + ("dimension",):
        assert f'id="{section}"' in html, section
    figures = sorted(p.name for p in (tiny_study.output / "figures").glob("*.png"))
    for expected in ("gaussian-samples.png", "student_t-samples.png", "training.png", "gaussian-errors.png",
                     "gaussian-worst.png", "gaussian-density.png", "gaussian-valid.png", "student_t-knn.png",
                     "gaussian-vae-projections.png", "gaussian-ae-path-isovariance.png",
                     "gaussian-vae-path-empty_region.png", "gaussian-vae-path-bounding_upper.png", "gaussian-sweep.png",
                     "gaussian-vae-d4-embeddings.png"):
        assert expected in figures
    # Every PNG beside the report is also inline in it, and four interactive 3-D plots are embedded.
    assert html.count('data-file="figures/') == len(figures)
    assert html.count('<img src="data:image/png;base64,') == len(figures)
    assert html.count('class="plotly-graph-div"') == 4


def test_report_is_self_contained(tiny_study):
    html = tiny_study.report.read_text()
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)="(https?:)?//', html)
    assert "Plotly.newPlot" in html and "plotly.js v" in html  # plotly.js itself is inlined


def test_every_number_agrees_with_its_file(tiny_study):
    parser = NumberSpans()
    parser.feed(tiny_study.report.read_text())
    assert len(parser.spans) > 150
    sources = set()
    for span in parser.spans:
        data = json.loads((tiny_study.output / span["data-source"]).read_text())
        value = lookup(data, span["data-key"])
        assert span["text"] == format_number(value, span["data-format"]), span
        sources.add(span["data-source"])
    assert {"results.json", "runs/gaussian-vae/metrics.json", "runs/gaussian-ae/analysis.json",
            "runs/student_t-vae/analysis.json"} <= sources


def test_run_folders_hold_the_analysis_files(tiny_study):
    for name in ("gaussian-vae", "gaussian-ae", "student_t-vae", "student_t-ae", "gaussian-vae-d2", "gaussian-vae-d4"):
        run = tiny_study.output / "runs" / name
        for file in ("config.json", "model.safetensors", "metrics.json", "analysis.json", "oracle.json", "latents.npz"):
            assert (run / file).is_file(), (name, file)
    analysis = json.loads((tiny_study.output / "runs/gaussian-vae/analysis.json").read_text())
    dataset_hash = json.loads((tiny_study.output / "results.json").read_text())["datasets"]["gaussian"]["content_hash"]
    assert analysis["provenance"]["dataset_hash"] == dataset_hash
    oracle = json.loads((tiny_study.output / "runs/gaussian-ae/oracle.json").read_text())
    assert set(oracle["provenance"]["calibrated_on"]) == {"gaussian-vae", "gaussian-ae"}
    assert set(analysis["exploration"]["paths"]) >= {"line_rho_axis", "arc", "isovariance", "bounding_upper", "bounding_lower",
                                                      "hull_perturbations", "empty_region", "interpolation",
                                                      "arithmetic"}
    knn = json.loads((tiny_study.output / "runs/student_t-ae/analysis.json").read_text())["knn_df"]
    assert 0 <= knn["accuracy_ci"][0] <= knn["accuracy"] <= knn["accuracy_ci"][1] <= 1


def test_a_second_study_reuses_trained_runs(tiny_study, capsys):
    model = tiny_study.output / "runs/gaussian-vae/model.safetensors"
    before = (model.read_bytes(), model.stat().st_mtime_ns)
    run_study(study_config_from(STUDY_TOML), tiny_study.output, progress=False, report=False)
    assert (model.read_bytes(), model.stat().st_mtime_ns) == before
    results = json.loads((tiny_study.output / "results.json").read_text())
    assert results["timings"]["training"] < 1.0


def test_report_opens_in_chromium_without_errors_or_requests(tiny_study):
    from .browser import launch_chromium

    errors, requests = [], []
    with launch_chromium() as browser:
        page = browser.new_page()
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(tiny_study.report.resolve().as_uri())
        page.wait_for_selector(".plotly-graph-div .main-svg", timeout=20_000)
        assert page.locator("img").count() >= 20
    assert errors == []
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []


@pytest.mark.slow
def test_quick_study_from_the_command_line(tmp_path, capsys):
    assert main(["study", "--quick", "-o", str(tmp_path / "q"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "gaussian-vae" in out and "report" in out
    assert (tmp_path / "q" / "report.html").stat().st_size > 1_000_000
