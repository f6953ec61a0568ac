"""What `latent-atlas study` prints when it finishes: one line per run, then the AE-vs-VAE verdicts over seeds."""

from __future__ import annotations

from pathlib import Path

from ..io import read_json
from .pipeline import StudyResult

HEADLINES = ("test_frobenius_mean", "reconstructions_valid", "empty_valid_bin2", "tail_paths_valid", "knn_accuracy")


def study_summary(result: StudyResult) -> str:
    header = f"{'run':<34} {'epochs':>6} {'train s':>8} {'Frobenius mean':>15} {'recon. valid':>12}"
    lines = ["runs: test reconstruction error (Frobenius norm per image) and reconstructions judged valid",
             header, "-" * len(header)]
    for run in result.graph.runs.values():
        summary = result.summaries.get(run.evaluate.id, {})
        fro, valid = summary.get("test_frobenius", {}).get("mean"), summary.get("reconstructions_valid")
        lines.append(f"{run.spec.name:<34} {summary.get('epochs') or '-':>6} {summary.get('train_seconds') or 0:>8.1f} "
                     f"{fro if fro is not None else float('nan'):>15.3f} "
                     f"{valid if valid is not None else float('nan'):>12.3f}")
    for name, task in result.graph.aggregates.items():
        path = Path(result.output) / task.params["path"]
        if not path.is_file() or "quantities" not in (data := read_json(path, what="aggregate")):
            continue
        rows = [(key, entry) for key, entry in data["quantities"].items() if key in HEADLINES and "paired" in entry]
        if rows:
            lines += ["", f"{name}: over {len(next(iter(rows))[1]['paired']['seeds'])} paired training seeds"]
            lines += [f"  {entry['label']}: {entry['paired']['verdict']['statement']}" for _, entry in rows]
    where = f"report {result.report}" if result.report.is_file() else f"results under {result.output}/"
    lines += ["", f"study finished in {result.seconds:.0f} s; {where}"]
    return "\n".join(lines)
