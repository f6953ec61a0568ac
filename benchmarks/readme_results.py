"""The README's "Results of the default study" tables, printed from a finished study's JSON.

    .venv/bin/python benchmarks/readme_results.py STUDY [--all]

For each dataset, one Markdown row per quantity of ``aggregates/compare-<data>.json``: each model's mean and
95 % t interval over the seeds, and the paired difference (VAE - AE) with the verdict that decided it and its
p-values (raw, then Holm within its family). ``--all`` prints every quantity the study aggregates; by default
the rows the README quotes. Then each threshold-free comparison of ``aggregates/evidence-<data>.json`` (the
result across the band of validity thresholds, and the paired verdict at the operating point), and the
study's task-seconds by stage and its machine, from ``results.json``.

Reads only the study's JSON files; computes nothing about the models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

README_ROWS = {
    "gaussian": [
        "test_frobenius_mean", "test_frobenius_p99", "reconstructions_valid", "empty_valid_bin0",
        "empty_valid_bin1", "empty_valid_bin2", "empty_valid_bin3", "tail_paths_valid", "empty_volume_common",
        "gaussian_valid", "mixture_valid", "prior_valid", "mig", "explicitness",
    ],
    "student_t": ["test_frobenius_mean", "test_frobenius_median", "reconstructions_valid", "knn_accuracy",
                  "knn_band_accuracy"],
}


def number(value: float, signed: bool = False) -> str:
    """Three decimals below 10, one above (percentiles); a sign where asked."""
    return f"{value:{'+' if signed else ''}.{3 if abs(value) < 10 else 1}f}"


def interval(summary: dict | None, signed: bool = False) -> str:
    if not summary or summary.get("mean") is None:
        return "-"
    if summary.get("low") is None or summary.get("high") is None or summary.get("sd", 0) == 0:
        return number(summary["mean"], signed)
    return (f"{number(summary['mean'], signed)} [{number(summary['low'], signed)}, "
            f"{number(summary['high'], signed)}]")


def p_values(verdict: dict, raw: str, adjusted: str) -> str:
    text = f"p = {verdict[raw]:.2g}"
    if verdict.get("family_size", 1) > 1 and verdict.get(adjusted) is not None:
        text += f", Holm {verdict[adjusted]:.2g}"
    return text


def verdict_text(paired: dict, better: str | None = None) -> str:
    """"VAE > AE (VAE worse), p = ..., Holm ...", "equivalent within ±m: TOST p = ...", or "not detected: p = ...
    (MDD ...)"; ``better`` ("lower" or "higher") names the better side of a detected difference."""
    verdict = paired["verdict"]
    first, second = verdict["names"]
    kind = verdict["kind"]
    if kind == "constant":  # every seed's difference is the same number: there is no spread to test
        return "the same difference at every seed: no test"
    if kind in ("a_greater", "b_greater"):
        order = f"{first} > {second}" if kind == "a_greater" else f"{first} < {second}"
        if better in ("lower", "higher"):
            first_better = (kind == "a_greater") == (better == "higher")
            order += f" ({first} {'better' if first_better else 'worse'})"
        return f"{order}, {p_values(verdict, 'p_value', 'p_adjusted')}"
    if kind == "equivalent":
        return f"equivalent within ±{verdict['margin']:g}: TOST {p_values(verdict, 'tost_p_value', 'tost_p_adjusted')}"
    text = f"not detected: {p_values(verdict, 'p_value', 'p_adjusted')}"
    if verdict.get("mdd") is not None:
        text += f" (MDD {verdict['mdd']:.2g})"
    if verdict.get("tost_p_value") is not None and verdict.get("margin") is not None:
        text += (f"; not shown equivalent within ±{verdict['margin']:g} "
                 f"(TOST {p_values(verdict, 'tost_p_value', 'tost_p_adjusted')})")
    return text


def row(quantity: dict, names: tuple[str, str] = ("vae", "ae")) -> str:
    by_model = quantity["by_model"]
    cells = [interval(by_model.get(name)) for name in names]
    paired = quantity.get("paired")
    if paired and paired.get("verdict"):
        comparison = f"{interval(paired['difference'], signed=True)}, {verdict_text(paired, quantity.get('better'))}"
    elif paired:
        comparison = f"{number(paired['difference']['mean'], signed=True)}, constant over seeds: no test"
    else:
        comparison = "one model only: no paired comparison"
    return f"| {quantity['label']} | {cells[0]} | {cells[1]} | {comparison} |"


def tables(study: Path, every_row: bool) -> list[str]:
    lines = []
    for path in sorted((study / "aggregates").glob("compare-*.json")):
        data = path.stem.removeprefix("compare-")
        quantities = json.loads(path.read_text())["quantities"]
        keys = list(quantities) if every_row else [k for k in README_ROWS.get(data, []) if k in quantities]
        lines += ["", f"| quantity ({data}) | VAE | AE | paired VAE - AE, verdict |", "|---|---|---|---|"]
        lines += [row(quantities[key]) for key in keys]
    for path in sorted((study / "aggregates").glob("evidence-*.json")):
        data = path.stem.removeprefix("evidence-")
        lines.append("")
        for name, comparison in json.loads(path.read_text())["comparisons"].items():
            at_operating_point = comparison["paired"]
            lines.append(f"- {data}, {name}: {comparison['stability']['statement']}; at the operating point "
                         f"{interval(at_operating_point['difference'], signed=True)}, "
                         f"{verdict_text(at_operating_point)}")
    results = json.loads((study / "results.json").read_text())
    stages = results.get("task_seconds_by_stage", {})
    lines += ["", "task-seconds by stage: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()),
              f"machine: {results.get('machine')}"]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--all", action="store_true", help="every aggregated quantity, not only the README's")
    args = parser.parse_args(argv)
    print("\n".join(tables(args.study, args.all)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
