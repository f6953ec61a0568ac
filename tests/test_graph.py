"""The task graph: content keys, the ledger, caching and invalidation, both backends, a real local Ray."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from latent_atlas.errors import AtlasError
from latent_atlas.graph import Task, TaskContext, ledger_entry, run_tasks
from latent_atlas.graph.executor import collect, path_lengths
from latent_atlas.graph.task import fingerprint


def write_number(ctx: TaskContext) -> dict:
    path = ctx.root / "out" / f"{ctx.task_id}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(ctx.params["value"]))
    with open(ctx.root / "calls.log", "a") as log:
        log.write(ctx.task_id + "\n")
    return {"value": ctx.params["value"]}


def add_inputs(ctx: TaskContext) -> dict:
    total = sum(ctx.input_summary(name)["value"] for name in ctx.input_ids)
    with open(ctx.root / "calls.log", "a") as log:
        log.write(ctx.task_id + "\n")
    return {"value": total, "threads": ctx.threads, "pid": os.getpid()}


def fail(ctx: TaskContext) -> dict:
    raise AtlasError("this input is bad")


def graph(a: int = 1, b: int = 2) -> Task:
    first = Task("a", "leaf", write_number, {"value": a})
    second = Task("b", "leaf", write_number, {"value": b})
    return Task("sum", "combine", add_inputs, {}, {"x": first, "y": second})


def calls(root: Path) -> list[str]:
    path = root / "calls.log"
    return path.read_text().split() if path.exists() else []


def test_keys_depend_on_params_inputs_and_version():
    assert graph().key == graph().key
    assert graph(a=5).key != graph().key
    assert graph(b=5).inputs["x"].key == graph().inputs["x"].key  # an unchanged input keeps its key
    changed = Task("a", "leaf", write_number, {"value": 1}, version=2)
    assert changed.key != graph().inputs["x"].key


def test_collect_orders_inputs_first_and_rejects_id_clashes():
    ids = [t.id for t in collect([graph()])]
    assert ids.index("sum") > ids.index("a") and ids.index("sum") > ids.index("b")
    clash = Task("other", "combine", add_inputs, {}, {"x": Task("a", "leaf", write_number, {"value": 9})})
    with pytest.raises(AtlasError, match="share the id a"):
        collect([graph(), clash])


def test_local_backend_caches_and_redoes_exactly_what_changed(tmp_path):
    summaries = run_tasks([graph()], tmp_path, backend="local", progress=False)
    assert summaries["sum"]["value"] == 3
    assert sorted(calls(tmp_path)) == ["a", "b", "sum"]
    entry = ledger_entry(tmp_path, "sum")
    assert entry["inputs"] == {"x": "a", "y": "b"} and entry["key"] == graph().key

    run_tasks([graph()], tmp_path, backend="local", progress=False)
    assert sorted(calls(tmp_path)) == ["a", "b", "sum"]  # nothing redone

    summaries = run_tasks([graph(b=10)], tmp_path, backend="local", progress=False)
    assert summaries["sum"]["value"] == 11
    assert calls(tmp_path)[3:] == ["b", "sum"]  # a kept its key


def test_a_task_interrupted_before_its_ledger_entry_runs_again(tmp_path):
    run_tasks([graph()], tmp_path, backend="local", progress=False)
    (tmp_path / "tasks" / "sum.json").unlink()
    run_tasks([graph()], tmp_path, backend="local", progress=False)
    assert calls(tmp_path)[3:] == ["sum"]


def test_failure_names_the_task_and_records_nothing(tmp_path):
    bad = Task("broken", "combine", fail, {}, {"x": Task("a", "leaf", write_number, {"value": 1})})
    with pytest.raises(AtlasError, match="combine broken: this input is bad"):
        run_tasks([bad], tmp_path, backend="local", progress=False)
    assert ledger_entry(tmp_path, "broken") is None and ledger_entry(tmp_path, "a") is not None


def two_datasets() -> list[Task]:
    """data -> train -> evaluate (-> analyse) for two datasets, the first dataset's chain first in graph order."""
    chains = []
    for name in ("a", "b"):
        data = Task(f"data-{name}", "data", write_number, {"value": 1})
        train = Task(f"train-{name}", "train", add_inputs, {}, {"data": data})
        chains.append(Task(f"evaluate-{name}", "evaluate", add_inputs, {}, {"run": train}))
    analyse = Task("analyse-a", "analyse", add_inputs, {}, {"evaluation": chains[0]})
    return [analyse, chains[1]]


def test_the_ready_task_with_the_longest_chain_ahead_starts_first(tmp_path):
    """With one slot, the second dataset and its training start before the first run's evaluation and analysis:
    the training (weight 20) is what the rest of the graph waits on."""
    lengths = path_lengths(collect(two_datasets()))
    assert lengths == {"data-a": 23.0, "train-a": 22.0, "evaluate-a": 2.0, "analyse-a": 1.0,
                       "data-b": 22.0, "train-b": 21.0, "evaluate-b": 1.0}
    run_tasks(two_datasets(), tmp_path, backend="local", progress=False)
    assert calls(tmp_path) == ["data-a", "train-a", "data-b", "train-b", "evaluate-a", "analyse-a", "evaluate-b"]


def make_thing(ctx: TaskContext) -> dict:
    """Writes out/<id>.txt (its declared output) holding the file made.txt's text: what it "makes"."""
    made = (ctx.root / "made.txt").read_text() if (ctx.root / "made.txt").exists() else "first"
    path = ctx.root / "out" / f"{ctx.task_id}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(made)
    with open(ctx.root / "calls.log", "a") as log:
        log.write(ctx.task_id + "\n")
    return {"content_hash": made, "value": 1}


def write_extra(ctx: TaskContext) -> dict:
    """Writes a file known only once it runs, and names it in its summary's ``files``."""
    (ctx.root / "extra.txt").write_text("x")
    with open(ctx.root / "calls.log", "a") as log:
        log.write(ctx.task_id + "\n")
    return {"value": 1, "files": ["extra.txt"]}


def made_chain() -> Task:
    made = Task("make", "data", make_thing, {}, outputs=("out/make.txt",))
    middle = Task("use", "train", add_inputs, {}, {"made": made})
    return Task("last", "report", fail_once, {}, {"used": middle})


def test_a_finished_task_whose_outputs_have_gone_runs_again_alone_when_it_makes_the_same(tmp_path, capsys):
    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    (tmp_path / "out" / "make.txt").unlink()
    run_tasks([made_chain()], tmp_path, backend="local", progress=True)
    assert calls(tmp_path) == ["make", "use", "last", "make"]  # what was built on it stays: it made the same
    assert (tmp_path / "out" / "make.txt").read_text() == "first"
    err = capsys.readouterr().err
    assert "[graph] make: out/make.txt is missing; running it again" in err
    assert "[1/3 tasks" not in err and "[3/3 tasks" in err.splitlines()[-1]

    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    assert calls(tmp_path)[4:] == []  # repaired: nothing left to do


def test_a_task_run_again_that_makes_something_else_redoes_what_was_built_on_it(tmp_path, capsys):
    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    (tmp_path / "out" / "make.txt").unlink()
    (tmp_path / "made.txt").write_text("second")  # e.g. retrained on another CPU: other weights
    run_tasks([made_chain()], tmp_path, backend="local", progress=True)
    assert calls(tmp_path)[3:] == ["make", "use", "last"]
    lines = capsys.readouterr().err.splitlines()
    assert "[graph] use: make was made again differently; running it again" in lines
    assert lines[-1].startswith("[3/3 tasks")  # the reopened tasks are not counted twice


def fail_once(ctx: TaskContext) -> dict:
    """Fails while the file fail.txt exists."""
    if (ctx.root / "fail.txt").exists():
        raise AtlasError("failing as asked")
    return add_inputs(ctx)


def test_what_was_built_on_a_changed_input_stays_out_of_date_after_an_interrupted_run(tmp_path):
    """The ledger, not the driver's memory, says what was built on what: a run that stops after an input was made
    again differently leaves the tasks built on the old one to the next run."""
    def chain():
        made = Task("make", "data", make_thing, {}, outputs=("out/make.txt",))
        return Task("last", "report", fail_once, {}, {"used": Task("use", "train", add_inputs, {}, {"made": made})})

    run_tasks([chain()], tmp_path, backend="local", progress=False)
    (tmp_path / "out" / "make.txt").unlink()
    (tmp_path / "made.txt").write_text("second")
    (tmp_path / "fail.txt").write_text("")
    with pytest.raises(AtlasError, match="failing as asked"):
        run_tasks([chain()], tmp_path, backend="local", progress=False)
    assert calls(tmp_path)[3:] == ["make", "use"]
    (tmp_path / "fail.txt").unlink()
    run_tasks([chain()], tmp_path, backend="local", progress=False)
    assert calls(tmp_path)[5:] == ["last"]  # built on the old "use": out of date still
    run_tasks([chain()], tmp_path, backend="local", progress=False)
    assert calls(tmp_path)[6:] == []


def test_no_task_runs_beside_an_input_that_is_being_made_again(tmp_path):
    """With room for two tasks, a new task reading a finished one must wait while that one's own input is made
    again: it could be made differently, and then the finished one runs again first."""
    def graph_with_new():
        made = Task("make", "data", make_thing, {}, outputs=("out/make.txt",))
        use = Task("use", "train", add_inputs, {}, {"made": made})
        return [Task("last", "report", add_inputs, {}, {"used": use}), Task("new", "report", add_inputs, {}, {"used": use})]

    run_tasks(graph_with_new()[:1], tmp_path, backend="local", progress=False)
    (tmp_path / "out" / "make.txt").unlink()
    (tmp_path / "made.txt").write_text("second")
    run_tasks(graph_with_new(), tmp_path, backend="local", max_parallel=2, progress=False)
    assert calls(tmp_path)[3:] == ["make", "use", "last", "new"]
    entries = {name: ledger_entry(tmp_path, name) for name in ("use", "new")}
    assert entries["new"]["made_from"] == {"use": fingerprint(graph_with_new()[1].inputs["used"],
                                                              entries["use"]["summary"], entries["use"]["made_from"])}


def write_part(ctx: TaskContext) -> dict:
    """Adds its own key to the shared JSON file parts.json."""
    path = ctx.root / "parts.json"
    content = json.loads(path.read_text()) if path.exists() else {}
    content[ctx.params["part"]] = 1
    path.write_text(json.dumps(content))
    with open(ctx.root / "calls.log", "a") as log:
        log.write(ctx.task_id + "\n")
    return {"value": 1}


def test_an_output_can_be_a_key_of_a_json_file_that_two_tasks_write(tmp_path):
    first = Task("first", "train", write_part, {"part": "training"}, outputs=("parts.json#training",))
    second = Task("second", "evaluate", write_part, {"part": "evaluation"}, {"run": first},
                  outputs=("parts.json#evaluation",))
    run_tasks([second], tmp_path, backend="local", progress=False)
    (tmp_path / "parts.json").unlink()
    run_tasks([second], tmp_path, backend="local", progress=False)  # the first alone would leave it without one
    assert calls(tmp_path) == ["first", "second", "first", "second"]
    assert json.loads((tmp_path / "parts.json").read_text()) == {"training": 1, "evaluation": 1}


def test_an_entry_written_before_files_were_recorded_names_its_output_under_file(tmp_path):
    task = Task("extra", "report", write_extra, {})
    run_tasks([task], tmp_path, backend="local", progress=False)
    entry_path = tmp_path / "tasks" / "extra.json"
    entry = json.loads(entry_path.read_text())
    entry["summary"] = {"value": 1, "file": "extra.txt"}
    del entry["made_from"]
    entry_path.write_text(json.dumps(entry))
    run_tasks([task], tmp_path, backend="local", progress=False)
    assert calls(tmp_path) == ["extra"]
    (tmp_path / "extra.txt").unlink()
    run_tasks([task], tmp_path, backend="local", progress=False)
    assert calls(tmp_path) == ["extra", "extra"]


def test_files_a_summary_names_are_outputs_too(tmp_path):
    task = Task("extra", "report", write_extra, {})
    run_tasks([task], tmp_path, backend="local", progress=False)
    run_tasks([task], tmp_path, backend="local", progress=False)
    assert calls(tmp_path) == ["extra"]
    (tmp_path / "extra.txt").unlink()
    run_tasks([task], tmp_path, backend="local", progress=False)
    assert calls(tmp_path) == ["extra", "extra"] and (tmp_path / "extra.txt").exists()


def test_progress_lines_count_tasks(tmp_path, capsys):
    run_tasks([graph()], tmp_path, backend="local", progress=True)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[graph] 3 tasks, 0 already done, 3 to run")
    assert err[-1].startswith("[3/3 tasks")


def test_bad_backend_and_parallelism_are_refused(tmp_path):
    with pytest.raises(AtlasError, match="unknown backend"):
        run_tasks([graph()], tmp_path, backend="spark")
    with pytest.raises(AtlasError, match="max_parallel"):
        run_tasks([graph()], tmp_path, backend="local", max_parallel=0)


@pytest.fixture(scope="module")
def ray_pickles_this_module_by_value():
    """Ray workers cannot import the tests package; ship this module's task functions by value."""
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def is_loopback(address: str) -> bool:
    """An ``ss`` local address such as ``127.0.0.1:80``, ``[::ffff:127.0.0.1]:80`` or ``[::1]:80``."""
    host = ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]"))
    mapped = getattr(host, "ipv4_mapped", None)
    return (mapped or host).is_loopback


def _ray_listeners(marker: str) -> list[str]:
    from latent_atlas.graph.ray_backend import processes_with_marker

    pids = set(processes_with_marker(marker))
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
    return [line.split()[3] for line in out.splitlines() if any(f"pid={p}," in line for p in pids)]


def test_real_ray_runs_tasks_in_workers_on_loopback_and_cleans_up(tmp_path, ray_pickles_this_module_by_value,
                                                                   monkeypatch):
    from latent_atlas.graph import ray_backend

    seen: dict[str, list[str]] = {}
    original_submit = ray_backend.RayBackend.submit

    def submit_and_look(self, task, made_from=None):
        seen.setdefault("listeners", _ray_listeners(self.marker))
        seen["temp_dir"] = [self.temp_dir]
        return original_submit(self, task, made_from)

    monkeypatch.setattr(ray_backend.RayBackend, "submit", submit_and_look)
    summaries = run_tasks([graph()], tmp_path, backend="ray", max_parallel=2, progress=False)
    assert summaries["sum"]["value"] == 3
    assert summaries["sum"]["pid"] != os.getpid() and summaries["sum"]["threads"] == 1
    assert seen["listeners"], "the local instance should have listening sockets while it runs"
    assert all(is_loopback(addr) for addr in seen["listeners"]), seen["listeners"]
    assert not Path(seen["temp_dir"][0]).exists()  # Ray's temp files and logs are gone
    assert not (tmp_path / "tasks" / "ray-session.json").exists()
    run_tasks([graph()], tmp_path, backend="ray", progress=False)  # all cached: Ray is not even started
    assert sorted(calls(tmp_path)) == ["a", "b", "sum"]


def test_a_lost_ledger_entry_of_an_input_is_not_reported_as_a_change(tmp_path, capsys):
    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    (tmp_path / "tasks" / "make.json").unlink()  # e.g. killed while being made again
    run_tasks([made_chain()], tmp_path, backend="local", progress=True)
    err = capsys.readouterr().err
    assert calls(tmp_path)[3:] == ["make"] and "running it again" not in err  # it made the same: nothing else
    assert err.splitlines()[-1].startswith("[3/3 tasks")


def test_entries_written_before_inputs_were_fingerprinted_still_see_a_changed_input(tmp_path):
    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    for name in ("make", "use", "last"):  # a ledger as older versions wrote it
        path = tmp_path / "tasks" / f"{name}.json"
        entry = json.loads(path.read_text())
        del entry["made_from"]
        path.write_text(json.dumps(entry))
    (tmp_path / "out" / "make.txt").unlink()
    (tmp_path / "made.txt").write_text("second")
    (tmp_path / "fail.txt").write_text("")  # "last" fails: the next run must still know it is out of date
    with pytest.raises(AtlasError, match="failing as asked"):
        run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    (tmp_path / "fail.txt").unlink()
    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    assert calls(tmp_path)[3:] == ["make", "use", "last"]


def test_an_older_entry_gets_its_inputs_fingerprints_before_anything_runs(tmp_path):
    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    path = tmp_path / "tasks" / "use.json"
    recorded_from = json.loads(path.read_text())["made_from"]
    entry = json.loads(path.read_text())
    del entry["made_from"]
    path.write_text(json.dumps(entry))
    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    assert calls(tmp_path)[3:] == [] and json.loads(path.read_text())["made_from"] == recorded_from


def test_a_task_killed_while_running_again_leaves_a_void_entry_that_keeps_its_parameters(tmp_path, monkeypatch):
    from latent_atlas.graph import executor

    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    (tmp_path / "out" / "make.txt").unlink()

    def interrupted(threads):  # Ctrl-C as the task starts, after its old entry was voided
        raise KeyboardInterrupt

    monkeypatch.setattr(executor, "limit_threads", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    entry = ledger_entry(tmp_path, "make")
    assert entry["key"] is None and entry["summary"] == {} and entry["params"] == {}
    assert entry["stage"] == "data"
    monkeypatch.undo()
    run_tasks([made_chain()], tmp_path, backend="local", progress=False)
    assert calls(tmp_path)[3:] == ["make"]  # it made the same: what was built on it stays
