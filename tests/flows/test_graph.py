"""The task graph, the runner's cache and lock, and the monthly graph in-process."""

from __future__ import annotations

from pathlib import Path

import pytest

from ewspipe.errors import InputError
from ewspipe.flows.executors import InlineExecutor, parse_executor
from ewspipe.flows.graph import Graph, Task, digest
from ewspipe.flows.monthly import build_monthly_graph, run_monthly
from ewspipe.flows.runner import EnvironmentLock, StateLocked, TaskCache, run_graph
from ewspipe.settings import load_settings
from ewspipe.store.statedb import open_state_db

CALLS: list[str] = []


def source(ctx, *, key, n):
    CALLS.append("source")
    return {"n": n}


def double(ctx, *, key, x):
    CALLS.append("double")
    return {"n": x["n"] * 2}


def total(ctx, *, key, parts):
    CALLS.append("total")
    return {"sum": sum(p["n"] for p in parts.values())}


def boom(ctx, *, key, x):
    raise InputError("task exploded")


def _graph(n: int = 3, last=total) -> Graph:
    return Graph([
        Task("source", source, params={"n": n}),
        Task("double", double, {"x": "source"}),
        Task("total", last, {"parts": ("source", "double")}),
    ])


def test_graph_refuses_miswiring():
    with pytest.raises(InputError, match="needs double, which no earlier task produces"):
        Graph([Task("total", total, {"parts": ("double",)})])
    with pytest.raises(InputError, match="two tasks named 'source'"):
        Graph([Task("source", source, params={"n": 1}), Task("source", source, params={"n": 2})])
    with pytest.raises(InputError, match="wires arguments"):
        Graph([Task("source", source, params={"m": 1})])


def test_keys_follow_inputs_and_params():
    g = _graph()
    values = {"source": {"n": 3}}
    k1 = g["double"].key("base", values)
    assert k1 == g["double"].key("base", {"source": {"n": 3}})
    assert k1 != g["double"].key("base", {"source": {"n": 4}})
    assert k1 != g["double"].key("other-code", values)
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})


def test_runner_reuses_cached_results(tmp_path):
    CALLS.clear()
    cache = TaskCache(tmp_path / "tasks", tmp_path)
    first = run_graph(_graph(), None, base_key="b", executor=InlineExecutor(), cache=cache)
    assert first.outputs["total"] == {"sum": 9}
    assert CALLS == ["source", "double", "total"]
    CALLS.clear()
    again = run_graph(_graph(), None, base_key="b", executor=InlineExecutor(), cache=cache)
    assert CALLS == [] and again.outputs == first.outputs
    assert {r.status for r in again.records} == {"reused"}
    assert not list((tmp_path / "tasks").rglob("*.tmp"))
    CALLS.clear()
    run_graph(_graph(n=4), None, base_key="b", executor=InlineExecutor(), cache=cache)
    assert CALLS == ["source", "double", "total"]


def test_a_failure_keeps_completed_tasks(tmp_path):
    CALLS.clear()
    cache = TaskCache(tmp_path / "tasks", tmp_path)
    with pytest.raises(InputError, match="task exploded"):
        run_graph(_graph(last=boom_total), None, base_key="b", executor=InlineExecutor(),
                  cache=cache)
    CALLS.clear()
    run_graph(_graph(), None, base_key="b", executor=InlineExecutor(), cache=cache)
    assert CALLS == ["total"]  # source and double were completed and are reused


def boom_total(ctx, *, key, parts):
    raise InputError("task exploded")


def test_lock_names_the_holder(tmp_path):
    path = tmp_path / "run.lock"
    with EnvironmentLock(path, timeout=0, environment="development"):
        assert path.read_text().split()[0].isdigit()
        with (pytest.raises(StateLocked, match=r"locked by another run \(pid \d+") as exc,
              EnvironmentLock(path, timeout=0.3, environment="development")):
            pass
        assert exc.value.exit_code == 1
    with EnvironmentLock(path, timeout=0, environment="development"):
        pass  # released


@pytest.mark.parametrize("spec", ["local", "dask", "tcp://127.0.0.1:8786"])
def test_executor_specs(spec):
    assert str(parse_executor(spec)) == spec


@pytest.mark.parametrize("spec", ["threads", "tcp://nohost", "tcp://:8786", ""])
def test_bad_executor_specs(spec):
    with pytest.raises(InputError, match="is not an executor") as exc:
        parse_executor(spec)
    assert exc.value.parameter == "executor"  # the CLI names --executor


def test_monthly_graph_shape(workspace):
    from ewspipe.catalog import load_catalog

    s = load_settings(workspace)
    g = build_monthly_graph(load_catalog(s.models_dir, ensembles_dir=s.ensembles_dir),
                            publish=False)
    names = g.names
    assert names[0] == "snapshot" and names[-2:] == ["report", "alerts"]
    assert "train:old_guess" not in names and "publish" not in names
    assert {"train:small_tree", "forecast:grid_ridge", "ensembles", "qa", "store"} <= set(names)
    prod = build_monthly_graph(load_catalog(s.models_dir, ensembles_dir=s.ensembles_dir),
                               publish=True)
    assert "publish" in prod.names


def test_monthly_run_in_process_is_idempotent(workspace):
    settings = load_settings(workspace)
    first = run_monthly(settings)
    assert first.status == "ok" and first.reused == []
    doc = first.to_dict()
    assert doc["environment"] == "development" and doc["qa"]["passed"]
    state = settings.state_dir / "development"
    assert Path(doc["outputs"]["report"]).is_file()
    assert (settings.state_dir / "snapshots").is_dir()  # shared, not per environment
    assert not (state / "snapshots").exists()
    again = run_monthly(settings)
    assert again.ran == ["snapshot"]  # it always looks; everything else is reused
    assert again.outputs == first.outputs
    records = open_state_db("", state).runs()
    assert [r["run_id"] for r in records] == [again.run_id, first.run_id]
    assert records[0]["status"] == "ok" and records[0]["environment"] == "development"


def test_costliest_ready_task_is_submitted_first(tmp_path):
    """Longest-processing-time first: a cluster's workers stay busy to the end."""

    class Recording(InlineExecutor):
        def __init__(self) -> None:
            self.order: list[tuple[str, float]] = []

        def submit(self, fn, *args, priority=0.0):
            self.order.append((args[3], priority))
            return super().submit(fn, *args, priority=priority)

    graph = Graph([
        Task("source", source, params={"n": 1}),
        Task("cheap", double, {"x": "source"}, cost=1.0),
        Task("dear", double, {"x": "source"}, cost=72.0),
        Task("middle", double, {"x": "source"}, cost=18.0),
    ])
    ex = Recording()
    run_graph(graph, None, base_key="b", executor=ex, cache=TaskCache(tmp_path / "t", tmp_path))
    assert [name for name, _ in ex.order] == ["source", "dear", "middle", "cheap"]
    assert dict(ex.order)["dear"] == 72.0
    # the cost orders work only: it is not part of the key
    assert graph["dear"].key("b", {"source": {"n": 1}}) == Task(
        "dear", double, {"x": "source"}).key("b", {"source": {"n": 1}})


def test_worker_with_other_code_refuses_the_task():
    from ewspipe.errors import EwspipeError
    from ewspipe.flows.runner import _execute
    from ewspipe.provenance import code_fingerprint

    assert _execute(source, None, "k", "source", {"n": 2}, code_fingerprint())[0] == {"n": 2}
    with pytest.raises(EwspipeError, match="task source: this worker runs other ewspipe code"):
        _execute(source, None, "k", "source", {"n": 2}, "0" * 64)


def test_training_cost_orders_learned_models_before_baselines():
    from ewspipe.catalog import load_catalog
    from ewspipe.flows.monthly import training_cost

    repo = Path(__file__).resolve().parents[2]
    cat = load_catalog(repo / "models", ensembles_dir=repo / "ensembles")
    cost = {name: training_cost(spec) for name, spec in cat.models.items()}
    assert cost["twin_gate"] > cost["amber_tree"] > cost["amber_ridge"] > cost["last_value"] == 0
