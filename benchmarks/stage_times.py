"""Time a finished study's evaluation, analysis and report tasks again, one thread each, on a copy of the study.

    .venv/bin/python benchmarks/stage_times.py STUDY_DIR [--tasks 'evaluate-*'] [--repeats 3]

Reruns every finished task whose id matches ``--tasks`` (a glob over the ids in ``STUDY_DIR/tasks``), from its
own recorded parameters, in a temporary copy of the study (the study itself is not touched), and prints each
task's median seconds and the total. To compare two versions of the code side by side, run it alternately
with each on ``PYTHONPATH`` (``git worktree add /tmp/old REV``; ``PYTHONPATH=/tmp/old/src``), on the same
study: the tasks then read the same runs, and only the code differs.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median

import torch

from latent_atlas.graph import TaskContext
from latent_atlas.graph.task import ledger_entry
from latent_atlas.study import tasks
from latent_atlas.study.report_task import draw_report_section

STAGES = {"evaluate": tasks.evaluate_run, "analyse": tasks.analyse_run, "report": draw_report_section}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--tasks", default="evaluate-*", help="glob over task ids (default: evaluate-*)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # as the study runs each task
    ids = sorted(path.stem for path in (args.study / "tasks").glob("*.json")
                 if fnmatch.fnmatch(path.stem, args.tasks))
    entries = {task_id: ledger_entry(args.study, task_id) for task_id in ids}
    entries = {task_id: entry for task_id, entry in entries.items() if entry and entry.get("stage") in STAGES}
    if not entries:
        raise SystemExit(f"no finished evaluate / analyse / report task of {args.study} matches {args.tasks!r}")
    seconds: dict[str, list[float]] = {task_id: [] for task_id in entries}
    with tempfile.TemporaryDirectory(prefix="stage-times-") as scratch:
        root = Path(scratch) / "study"
        shutil.copytree(args.study, root)
        for _ in range(args.repeats):
            for task_id, entry in entries.items():
                context = TaskContext(root=root, task_id=task_id, params=entry["params"], input_ids=entry["inputs"])
                started = time.perf_counter()
                STAGES[entry["stage"]](context)
                seconds[task_id].append(time.perf_counter() - started)
    print(f"torch {torch.__version__}, 1 thread; median of {args.repeats} runs of each task (s); recorded: the "
          "study's own")
    for task_id, measured in seconds.items():
        print(f"{task_id:55s} {median(measured):7.2f}   recorded {entries[task_id].get('seconds', float('nan')):7.2f}")
    print(f"{'total':55s} {sum(median(m) for m in seconds.values()):7.2f}")
    print(json.dumps({task_id: round(median(m), 3) for task_id, m in seconds.items()}))


if __name__ == "__main__":
    main()
