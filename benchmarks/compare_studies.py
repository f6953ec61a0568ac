"""Two finished studies of the same plan, run by run and verdict by verdict: how far apart are they?

    .venv/bin/python benchmarks/compare_studies.py STUDY_A STUDY_B [--margins 0.01 0.02 0.03]

For studies that differ in one setting (the training precision, the machine, the code version):

1. every run both hold, paired by name: the ratio of their test Frobenius errors (B / A), summarised on the log
   scale, with a paired t-test (scipy) and an equivalence test (statsmodels' paired TOST) of the log ratio at
   each of ``--margins`` (relative, so 0.02 is ±2 %);
2. every AE-vs-VAE verdict of the aggregates (``aggregates/compare-*.json`` and ``aggregates/evidence-*.json``):
   whether its kind (one greater, equivalent, not detected) is the same in both, and for each that is not, the
   p-values that decided it (Holm-adjusted where the study adjusts).

Reads only the studies' JSON files; computes nothing about the models.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired


def test_errors(study: Path) -> dict[str, float]:
    """Run name -> mean test Frobenius error, for every evaluated run of ``study``."""
    errors = {}
    for metrics in sorted((study / "runs").glob("*/metrics.json")):
        frobenius = json.loads(metrics.read_text()).get("test_frobenius")
        if frobenius:
            errors[metrics.parent.name] = float(frobenius["mean"])
    return errors


def verdicts(study: Path) -> dict[str, dict]:
    """"<aggregate file>: <quantity>" -> the paired verdict of every AE-vs-VAE comparison the study aggregates."""
    found = {}
    for path in sorted((study / "aggregates").glob("*.json")):
        document = json.loads(path.read_text())
        entries = document.get("quantities") or document.get("comparisons") or {}
        for name, entry in entries.items():
            verdict = (entry.get("paired") or {}).get("verdict") if isinstance(entry, dict) else None
            if verdict:
                found[f"{path.stem}: {name}"] = verdict
    return found


def deciding_p(verdict: dict) -> str:
    """The p-values behind a verdict, as the report states them."""
    raw, adjusted = ("tost_p_value", "tost_p_adjusted") if verdict["kind"] == "equivalent" else ("p_value", "p_adjusted")
    text = f"p = {verdict[raw]:.3g}" if raw in verdict and verdict[raw] is not None else "no p-value"
    if adjusted in verdict and verdict.get("family_size", 1) > 1:
        text += f", Holm {verdict[adjusted]:.3g}"
    return text


def compare_errors(a: dict[str, float], b: dict[str, float], margins: list[float]) -> None:
    names = sorted(set(a) & set(b))
    if len(names) < 2:
        print(f"{len(names)} run(s) in both studies: too few to compare")
        return
    log_a, log_b = np.log([a[n] for n in names]), np.log([b[n] for n in names])
    ratios = np.exp(log_b - log_a)
    print(f"test Frobenius error, B / A, over the {len(names)} runs both hold:")
    for name, ratio in zip(names, ratios):
        print(f"  {name:28s} {a[name]:.4f} -> {b[name]:.4f}  ({(ratio - 1) * 100:+.1f} %)")
    difference = log_b - log_a
    print(f"  log ratio: mean {difference.mean():+.4f}, sd {difference.std(ddof=1):.4f}, "
          f"from {(ratios.min() - 1) * 100:+.1f} % to {(ratios.max() - 1) * 100:+.1f} %; "
          f"paired t p = {stats.ttest_rel(log_b, log_a).pvalue:.3g}")
    for margin in margins:
        bound = math.log1p(margin)
        p_value = ttost_paired(log_b, log_a, -bound, bound)[0]
        print(f"  equivalent within ±{margin * 100:g} % (paired TOST on the log ratio): p = {p_value:.3g}")


def compare_verdicts(a: dict[str, dict], b: dict[str, dict]) -> None:
    names = sorted(set(a) & set(b))
    changed = [name for name in names if a[name]["kind"] != b[name]["kind"]]
    print(f"\nAE-vs-VAE verdicts in both studies' aggregates: {len(names)}; the same kind in "
          f"{len(names) - len(changed)}, changed in {len(changed)}")
    for name in changed:
        print(f"  {name}: A {a[name]['kind']} ({deciding_p(a[name])}) -> B {b[name]['kind']} ({deciding_p(b[name])})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study_a", type=Path)
    parser.add_argument("study_b", type=Path)
    parser.add_argument("--margins", type=float, nargs="+", default=[0.01, 0.02, 0.03],
                        help="relative equivalence margins for the test errors (default 0.01 0.02 0.03)")
    args = parser.parse_args(argv)
    for study in (args.study_a, args.study_b):
        if not (study / "runs").is_dir():
            parser.error(f"{study} is not a study folder (no runs/)")
    compare_errors(test_errors(args.study_a), test_errors(args.study_b), args.margins)
    compare_verdicts(verdicts(args.study_a), verdicts(args.study_b))


if __name__ == "__main__":
    main()
