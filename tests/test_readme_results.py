"""benchmarks/readme_results.py: the README's result rows say what the aggregates decided."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "readme_results.py"
spec = importlib.util.spec_from_file_location("readme_results", SCRIPT)
readme_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_results)


def summary(mean, low=None, high=None, sd=0.01):
    return {"mean": mean, "low": low, "high": high, "sd": sd}


def quantity(kind, better="lower", **verdict):
    paired_verdict = {"names": ["VAE", "AE"], "kind": kind, "margin": 0.02, "family_size": 6, "p_value": 0.013,
                      "p_adjusted": 0.04, "tost_p_value": 0.9, "tost_p_adjusted": 1.0, "mdd": 0.047, **verdict}
    return {"label": "test error", "better": better,
            "by_model": {"vae": summary(0.301, 0.277, 0.325), "ae": summary(0.230, 0.217, 0.243)},
            "paired": {"difference": summary(0.071, 0.035, 0.106), "verdict": paired_verdict}}


def test_a_detected_difference_names_the_worse_model_and_both_p_values():
    assert readme_results.row(quantity("a_greater")) == (
        "| test error | 0.301 [0.277, 0.325] | 0.230 [0.217, 0.243] | "
        "+0.071 [+0.035, +0.106], VAE > AE (VAE worse), p = 0.013, Holm 0.04 |")
    assert "VAE > AE (VAE better)" in readme_results.row(quantity("a_greater", better="higher"))
    assert "VAE < AE (VAE worse)" in readme_results.row(quantity("b_greater", better="higher"))


def test_equivalence_quotes_the_tost_and_no_detection_its_minimum_detectable_difference():
    assert "equivalent within ±0.02: TOST p = 0.001, Holm 0.006" in readme_results.row(
        quantity("equivalent", tost_p_value=0.001, tost_p_adjusted=0.006))
    text = readme_results.row(quantity("not_detected", p_value=0.2, p_adjusted=0.6))
    assert "not detected: p = 0.2, Holm 0.6 (MDD 0.047); not shown equivalent within ±0.02 (TOST p = 0.9, Holm 1)" in text


def test_a_model_without_the_quantity_gets_a_dash_and_no_test():
    prior = {"label": "prior", "by_model": {"vae": summary(0.66, 0.55, 0.77), "ae": summary(None)}}
    assert readme_results.row(prior) == "| prior | 0.660 [0.550, 0.770] | - | one model only: no paired comparison |"


def test_a_difference_constant_over_seeds_is_printed_without_a_test():
    constant = quantity("constant", p_value=None, p_adjusted=None, tost_p_value=None, tost_p_adjusted=None, mdd=None)
    constant["paired"]["difference"] = summary(-0.053, sd=0.0)
    assert readme_results.row(constant) == (
        "| test error | 0.301 [0.277, 0.325] | 0.230 [0.217, 0.243] | -0.053, the same difference at every seed: "
        "no test |")
