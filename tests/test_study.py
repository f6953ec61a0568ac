"""The whole study on tiny data, through the task graph (in process): every section, aggregates over two
seeds, the report and its numbers traced to files, and a second run that redoes nothing."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser

import pytest

from latent_atlas.graph import ledger_entry
from latent_atlas.graph.task import TaskContext
from latent_atlas.report.html import format_number, lookup
from latent_atlas.study import run_study, study_config_from
from latent_atlas.study.pipeline import study_graph
from latent_atlas.study.registry import ANALYSES, analysis
from latent_atlas.study.runs import study_runs
from latent_atlas.study.tasks import analyse_run

SECTIONS = ("summary", "data", "oracle", "models", "reconstruction", "validity", "latent", "directions", "holes",
            "generation", "four", "metrics", "dimension", "toolbox", "reproduce")
STUDY_TOML = {
    "data": {"grid_size": 16, "var_x": {"start": 0.1, "stop": 4.9, "step": 0.8},
             "var_y": {"start": 0.1, "stop": 4.9, "step": 0.8}, "rho": {"start": -0.9, "stop": 0.9, "step": 0.3}},
    "model": {"channels": [4, 8], "hidden_dims": [32]},
    "train": {"epochs": 2, "batch_size": 32},
    "study": {"seeds": [0, 1], "sections": ["dimensions", "toolbox"],
              "dimensions": {"latent_dims": [2, 3], "seeds": [0, 1]}, "toolbox": {"betas": [0.5, 2.0], "seeds": [0]}},
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
    return run_study(study_config_from(STUDY_TOML), output, backend="local", progress=False)


def test_runs_cover_datasets_models_seeds_and_sections():
    names = {spec.name for spec in study_runs(study_config_from(STUDY_TOML))}
    core = {f"{d}-{m}-s{s}" for d in ("gaussian", "student_t") for m in ("vae", "ae") for s in (0, 1)}
    assert core <= names
    assert {"gaussian-vae-latent_dim2-s0", "gaussian-vae-latent_dim2-s1", "gaussian-vae-beta0.5-s0",
            "gaussian-vae-beta2-s0"} <= names
    assert {"gaussian-cvae-s0", "student_t-cvae-s0"} <= names and "gaussian-cvae-s1" not in names  # toolbox seeds
    assert "gaussian-vae-latent_dim3-s0" not in names  # the default dimension is the core run, trained once


def test_a_quick_study_gives_its_analyses_their_quick_settings():
    def settings(quick: bool) -> dict:
        graph = study_graph(study_config_from(STUDY_TOML, quick=quick), with_report=False)
        return graph.runs["gaussian-vae-s0"].analyses["generation"].params["settings"]

    full, quick = settings(False), settings(True)
    assert full["n_draws"] == ANALYSES["generation"].params["n_draws"] == 2000
    assert quick["n_draws"] == ANALYSES["generation"].quick["n_draws"] < full["n_draws"]
    assert {k: v for k, v in quick.items() if k not in ANALYSES["generation"].quick} == {
        k: v for k, v in full.items() if k not in ANALYSES["generation"].quick}  # only the quick ones change


def test_every_analysis_runs_with_its_quick_settings(tiny_study, tmp_path):
    """The quick settings are smaller samples: each analysis that has some must still run with them."""
    quick_graph = study_graph(study_config_from(STUDY_TOML, quick=True), with_report=False)
    root = tmp_path / "study"
    shutil.copytree(tiny_study.output, root)
    tried = set()
    for run_name in ("gaussian-vae-s0", "gaussian-ae-s0"):
        for name, task in quick_graph.runs[run_name].analyses.items():
            if not ANALYSES[name].quick:
                continue
            summary = analyse_run(TaskContext(root=root, task_id=task.id, params=task.params, input_ids={}))
            results = json.loads((root / summary["file"]).read_text())
            assert results["provenance"]["analysis"] == name
            tried.add(name)
    assert tried == {name for name, a in ANALYSES.items() if a.quick and "vae" in (a.models or ("vae",))
                     and (a.datasets is None or "gaussian" in a.datasets) and "core" in a.groups}


def test_a_quick_setting_must_name_a_setting():
    with pytest.raises(ValueError, match="quick settings .*'n_draw'.* are not settings"):
        analysis("misnamed", n_draws=10, quick={"n_draw": 5})


def test_report_has_every_section_and_inlines_every_figure(tiny_study):
    html = tiny_study.report.read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    pngs = sorted(p.name for p in (tiny_study.output / "figures").glob("*.png"))
    assert len(pngs) > 60
    assert html.count('data-file="figures/') == len(pngs)
    assert html.count('class="plotly-graph-div"') == 4
    assert not re.search(r'<(script|img|link|iframe)[^>]+(src|href)="(https?:)?//', html)


def test_every_number_agrees_with_its_file(tiny_study):
    parser = NumberSpans()
    parser.feed(tiny_study.report.read_text())
    assert len(parser.spans) > 400
    sources = set()
    for span in parser.spans:
        data = json.loads((tiny_study.output / span["data-source"]).read_text())
        assert span["text"] == format_number(lookup(data, span["data-key"]), span["data-format"]), span
        sources.add(span["data-source"].split("/")[0])
    assert {"results.json", "runs", "aggregates", "oracle", "datasets"} <= sources


def test_aggregates_hold_per_seed_values_and_paired_verdicts(tiny_study):
    compare = json.loads((tiny_study.output / "aggregates/compare-gaussian.json").read_text())
    entry = compare["quantities"]["test_frobenius_mean"]
    for kind in ("vae", "ae"):
        per_seed = entry["by_model"][kind]["per_seed"]
        assert set(per_seed) == {"0", "1"}
        metrics = json.loads((tiny_study.output / f"runs/gaussian-{kind}-s1/metrics.json").read_text())
        assert per_seed["1"] == pytest.approx(metrics["test_frobenius"]["mean"])
    assert entry["paired"]["seeds"] == [0, 1] and "kind" in entry["paired"]["verdict"]
    dims = json.loads((tiny_study.output / "aggregates/dimensions.json").read_text())
    assert dims["levels"] == [2, 3]  # D = 3 is the core VAE, trained once and counted in the curve
    assert [p["n"] for p in dims["quantities"]["test_frobenius_mean"]["curve"]] == [2, 2]
    evidence = json.loads((tiny_study.output / "aggregates/evidence-gaussian.json").read_text())
    assert {"reconstructions", "empty_regions", "tail_paths"} <= set(evidence["comparisons"])


def test_a_second_run_redoes_nothing(tiny_study):
    model = tiny_study.output / "runs/gaussian-vae-s0/model.safetensors"
    before = model.stat().st_mtime_ns
    again = run_study(study_config_from(STUDY_TOML), tiny_study.output, backend="local", progress=False)
    assert model.stat().st_mtime_ns == before
    assert again.summaries.keys() == tiny_study.summaries.keys()
    assert ledger_entry(tiny_study.output, "report")["key"] == tiny_study.graph.report.key


def test_deleted_outputs_are_made_again_and_nothing_else(tiny_study, tmp_path, capsys):
    """Outputs deleted by hand are made again by exactly the tasks that made them: a run's weights come back
    from its training state (the same bytes, so nothing built on them is redone)."""
    copy = tmp_path / "study"
    shutil.copytree(tiny_study.output, copy)
    model = copy / "runs/gaussian-vae-s0/model.safetensors"
    weights = model.read_bytes()
    manifest = json.loads((copy / "figures/_section-latent_section.json").read_text())
    figure = copy / "figures" / next(iter(manifest.values()))["file"]
    gone = [model, copy / "runs/gaussian-ae-s1/analysis/generation.json", copy / "aggregates/compare-gaussian.json",
            figure, copy / "report.html"]
    for path in gone:
        path.unlink()
    run_study(study_config_from(STUDY_TOML), copy, backend="local", progress=True)
    err = capsys.readouterr().err
    rerun = sorted(re.findall(r"\] \w+ (\S+) done in", err))
    assert rerun == sorted(["train-gaussian-vae-s0", "analyse-gaussian-ae-s1-generation", "aggregate-compare-gaussian",
                            "report-latent_section", "report"])
    assert "[graph] train-gaussian-vae-s0: runs/gaussian-vae-s0/model.safetensors is missing; running it again" in err
    assert all(path.exists() for path in gone) and model.read_bytes() == weights


def test_a_run_folder_with_files_gone_is_made_whole_again(tiny_study, tmp_path):
    """metrics.json holds the training's part and the evaluation's: both are written again. Without its
    config.json a run is trained again from the start, which replaces its folder: its evaluation and analyses are
    made again too, before anything that reads them."""
    copy = tmp_path / "study"
    shutil.copytree(tiny_study.output, copy)
    metrics = copy / "runs/gaussian-vae-s1/metrics.json"
    before = json.loads(metrics.read_text())
    metrics.unlink()
    (copy / "runs/gaussian-ae-s0/config.json").unlink()
    (copy / "aggregates/compare-gaussian.json").unlink()
    aggregate_before = json.loads((tiny_study.output / "aggregates/compare-gaussian.json").read_text())
    run_study(study_config_from(STUDY_TOML), copy, backend="local", progress=False)
    after = json.loads(metrics.read_text())
    assert after["training"] == before["training"] and after["test_frobenius"] == before["test_frobenius"]
    analyses = sorted(p.name for p in (tiny_study.output / "runs/gaussian-ae-s0/analysis").iterdir())
    assert sorted(p.name for p in (copy / "runs/gaussian-ae-s0/analysis").iterdir()) == analyses
    assert json.loads((copy / "aggregates/compare-gaussian.json").read_text()) == aggregate_before


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
        assert page.locator("img").count() > 60
    assert errors == []
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []


STUDY_TOML_TEXT = """
[data]
grid_size = 16
var_x = { start = 0.1, stop = 4.9, step = 0.8 }
var_y = { start = 0.1, stop = 4.9, step = 0.8 }
rho = { start = -0.9, stop = 0.9, step = 0.3 }
[model]
channels = [4, 8]
hidden_dims = [32]
[train]
epochs = 2
batch_size = 32
[study]
seeds = [0, 1]
sections = ["dimensions", "toolbox"]
dimensions = { latent_dims = [2, 3], seeds = [0, 1] }
toolbox = { betas = [0.5, 2.0], seeds = [0] }
"""


def test_the_study_command_on_a_finished_study_prints_the_verdicts_and_runs_nothing(tiny_study, tmp_path, capsys):
    from latent_atlas.cli import main
    from latent_atlas.config import load_toml

    config = tmp_path / "study.toml"
    config.write_text(STUDY_TOML_TEXT)
    assert study_config_from(load_toml(config)) == study_config_from(STUDY_TOML)
    assert main(["study", "--config", str(config), "-o", str(tiny_study.output), "--backend", "local"]) == 0
    out, err = capsys.readouterr()
    assert "0 to run" in err
    assert "gaussian-vae-s1" in out and "compare-gaussian: over 2 paired training seeds" in out
    assert "test Frobenius error, mean:" in out and str(tiny_study.report) in out


def test_a_study_without_the_optional_sections_renders_without_them(tiny_study, tmp_path):
    """The default study has neither the dimensions nor the toolbox section: no aggregates, no figures for them."""
    import shutil

    from latent_atlas.report.build import MANIFEST_PREFIX, write_report_html

    core = tmp_path / "core"
    shutil.copytree(tiny_study.output, core)
    for name in ("dimensions", "betas", "toolbox-gaussian", "toolbox-student_t"):
        (core / "aggregates" / f"{name}.json").unlink()
    for section in ("dimension_section", "toolbox_section"):
        (core / "figures" / f"{MANIFEST_PREFIX}{section}.json").write_text("{}")
    results = json.loads((core / "results.json").read_text())
    results["config"]["sections"] = []
    html = write_report_html(core, results).read_text()
    assert 'id="dimension"' not in html and 'id="toolbox"' not in html and 'href="#dimension"' not in html
    for section in ("summary", "reconstruction", "validity", "holes", "reproduce"):
        assert f'id="{section}"' in html, section
    parser = NumberSpans()
    parser.feed(html)
    assert not any(span["data-source"].startswith(("aggregates/dimensions", "aggregates/betas",
                                                     "aggregates/toolbox")) for span in parser.spans)
