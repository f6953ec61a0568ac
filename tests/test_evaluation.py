import hashlib
import json

import numpy as np
import pytest

from latent_atlas.evaluation import evaluate_run, frobenius_errors, summarize
from latent_atlas.io import read_npz
from latent_atlas.models.inference import reconstruct


def test_frobenius_matches_numpy_norm():
    rng = np.random.default_rng(0)
    a, b = rng.random((4, 6, 5)), rng.random((4, 6, 5))
    np.testing.assert_allclose(frobenius_errors(a, b), [np.linalg.norm(x - y, "fro") for x, y in zip(a, b)])
    assert frobenius_errors(a, a).max() == 0


def test_summary_percentiles():
    summary = summarize(np.arange(1, 101))
    assert summary == {"mean": 50.5, "median": 50.5, "p90": pytest.approx(90.1), "p99": pytest.approx(99.01), "max": 100}


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_evaluate_writes_metrics_and_per_image_errors(trained_runs, tiny_dataset, kind):
    run = trained_runs[kind]
    evaluation = evaluate_run(run, tiny_dataset)
    results = evaluation.results
    test_images = tiny_dataset.images[tiny_dataset.test_idx]
    expected = frobenius_errors(test_images, reconstruct(run.load_model(), test_images))
    np.testing.assert_allclose(evaluation.errors, expected)
    np.testing.assert_allclose(frobenius_errors(test_images, evaluation.reconstructions), expected)
    saved = read_npz(run.path / "evaluation.npz")
    np.testing.assert_array_equal(saved["test_idx"], tiny_dataset.test_idx)
    np.testing.assert_allclose(saved["frobenius"], expected)
    metrics = run.metrics()
    assert metrics["test_frobenius"] == pytest.approx(summarize(expected))
    assert set(metrics["test_frobenius"]) == {"mean", "median", "p90", "p99", "max"}
    assert "training" in metrics  # evaluation merges, it does not replace
    provenance = metrics["provenance"]
    assert provenance["dataset_hash"] == tiny_dataset.content_hash and provenance["config"] == run.config
    assert provenance["model_sha256"] == hashlib.sha256((run.path / "model.safetensors").read_bytes()).hexdigest()
    assert json.loads(str(saved["metadata"])) == provenance
    if kind == "vae":
        elbo = results["test_elbo"]
        assert elbo["elbo"] == pytest.approx(-(elbo["reconstruction_nll"] + elbo["kl"]))
        assert elbo["kl"] > 0
    else:
        assert "test_elbo" not in results
