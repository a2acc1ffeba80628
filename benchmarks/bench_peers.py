"""ewspipe side by side with the VIEWS packages (views-evaluation, views-baseline,
views-stepshifter), on the same data and protocol, in alternating runs of one invocation.

Each pair is one harness case whose command is one *round*: ``python -m benchmarks.bench_peers
round SPEC`` measures the ewspipe run, then the peer run, each through the harness's own
isolated wrapper (``harness.measure``: fresh interpreter, wall time, peak RSS of that command
alone), and prints both. With ``--repeats N`` the harness runs N rounds, so the runs alternate
ewspipe, peer, ewspipe, peer, ... and the ratio of the medians comes from one invocation on one
machine state. Verification accumulates the rounds and renders the side-by-side table (medians,
ratios, peak RSS of each side) as the case's "checked" account; it fails the benchmark when the
two sides disagree on numbers that must be equal.

The peers run in their own venvs (``benchmarks/peers/install.py``, installed on demand) through
the drivers in ``benchmarks/peers/`` that call their public APIs; a peer that cannot be
installed or fails is reported with the exact reason, and never replaced by a number.

Children (run by the rounds, not by hand)::

    python -m benchmarks.bench_peers ewspipe eval DIR point|crps WARM
    python -m benchmarks.bench_peers ewspipe baselines PANEL OUT SPECS.json
    python -m benchmarks.bench_peers ewspipe stepshifter PANEL OUT SPEC.json
    python -m benchmarks.bench_peers round SPEC.json
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    CM_FILE,
    REPO,
    Benchmark,
    Case,
    SetupError,
    VerificationError,
    measure,
    shared_dir,
)

__all__ = ["BENCHMARKS"]

PEERS_DIR = REPO / "benchmarks" / "peers"
TARGET = "ged_sb"

# calibration protocol (DOMAIN.md section 2): train 121-444, 13 origins 444..456, 36 steps
TRAIN_FIRST, TRAIN_LAST, TEST_LAST = 121, 444, 492
SEQUENCES, STEPS = 13, 36

# evaluation shapes: the metrics benchmark's (issue) shapes
POINT_CELLS = 13_110  # 13,110 x 13 x 36 = 6,135,480 rows
CRPS_UNITS, CRPS_SAMPLES = 2_137, 100  # 2,137 x 13 x 36 = 1,000,116 rows x 100 samples
EVAL_WARM = 2
EQUAL_REL = 1e-9

BASELINES = {  # ewspipe model file -> views-baseline model, same hyperparameters
    "zero_line": "ZeroModel",
    "last_value": "LocfModel",
    "year_average": "AverageModel",
    "past_draws": "ConflictologyModel",
}
DETERMINISTIC = ("zero_line", "last_value", "year_average")
STEPSHIFTER_MODEL = "amber_tree"
SIDE_TIMEOUT_S = 1800.0
RSS_POLL_S = 0.2


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# =============================================================================================
# inputs (written once per benchmark invocation, before the rounds; not timed)
# =============================================================================================


def _workdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"ewspipe-peers-{prefix}-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _grid(units: Any) -> dict[str, Any]:
    import numpy as np

    n = len(units)
    origin = np.repeat(np.arange(TRAIN_LAST, TRAIN_LAST + SEQUENCES), STEPS * n)
    step = np.tile(np.repeat(np.arange(1, STEPS + 1), n), SEQUENCES)
    unit = np.tile(units, SEQUENCES * STEPS)
    return {"origin": origin, "step": step, "month": origin + step, "unit": unit}


def _actual_rows(rng: Any, grid: dict[str, Any], units: Any) -> Any:
    """Zero-inflated, heavy-tailed counts per (month, unit), gathered onto the rows."""
    import numpy as np

    months = np.arange(TRAIN_LAST + 1, TRAIN_LAST + SEQUENCES + STEPS)
    n = len(months) * len(units)
    value = np.where(rng.random(n) < 0.04, np.floor(rng.pareto(1.1, n) * 3) + 1, 0.0)
    table = value.reshape(len(months), len(units))
    col = np.searchsorted(units, grid["unit"])
    return table[grid["month"] - months[0], col]


def _write_eval_inputs(folder: Path, case: str) -> dict[str, int]:
    import numpy as np

    rng = np.random.default_rng(20_240_444 if case == "point" else 20_240_100)
    n_units = POINT_CELLS if case == "point" else CRPS_UNITS
    units = np.sort(rng.choice(259_200, size=n_units, replace=False)) + 1
    grid = _grid(units)
    for key in ("origin", "step", "month", "unit"):
        np.save(folder / f"{key}.npy", grid[key].astype(np.int64))
    rows = len(grid["origin"])
    if case == "point":
        np.save(folder / "point.npy", rng.gamma(0.3, 2.0, rows))
        samples = 1
    else:
        samples = CRPS_SAMPLES
        block = np.lib.format.open_memmap(folder / "samples.npy", mode="w+",
                                          dtype=np.float64, shape=(rows, samples))
        for lo in range(0, rows, 50_000):  # counts with ties, as real sample forecasts have
            part = rng.gamma(0.4, 20.0, size=block[lo:lo + 50_000].shape)
            part[rng.random(part.shape) < 0.6] = 0.0
            block[lo:lo + 50_000] = np.floor(part)
        block.flush()
        np.save(folder / "point.npy", np.asarray(block).mean(axis=1))
        del block
    np.save(folder / "actual.npy", _actual_rows(rng, grid, units))
    return {"rows": rows, "units": n_units, "samples": samples}


def _cm_source() -> Path:
    source = shared_dir() / CM_FILE
    if not source.is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{CM_FILE} ({source})")
    return source


def _catalog() -> Any:
    from ewspipe.catalog.loader import load_catalog

    return load_catalog(REPO / "models")


def _stepshifter_config(spec: Any) -> dict[str, Any]:
    """The peer's config dict with the ewspipe model's learner and hyperparameters."""
    hp = spec.hyperparameters_dict()
    if hp.get("learner") != "lightgbm" or not hp.get("log_target", True):
        raise SetupError(f"{spec.name}: expected a LightGBM stepshifter with a log1p target")
    # ewspipe's LightGBM defaults (models/learners.py) made explicit, so both sides fit the
    # same learner: one thread per fit (both parallelise over steps), deterministic, row-wise
    params = {"deterministic": True, "force_row_wise": True, "verbose": -1, "n_jobs": 1,
              **hp["learner_params"], "random_state": hp["seed"]}
    return {
        "steps": list(range(1, STEPS + 1)),
        "targets": [spec.target],
        "target_transform": "log1p",
        "model_reg": "LGBMRegressor",
        "sweep": False,
        "parameters": params,
        "partition": {"train": [TRAIN_FIRST, TRAIN_LAST], "test": [TRAIN_LAST + 1, TEST_LAST]},
    }


def _write_stepshifter_input(folder: Path, source: Path, spec: Any) -> dict[str, Any]:
    """ewspipe's feature values for the peer: month_id, country_id, target, f01..f20."""
    import pandas as pd

    from ewspipe.features.build import build_design
    from ewspipe.panel.schema import validate_panel
    from ewspipe.panel.sources.table import read_table

    panel, _ = validate_panel(read_table(source), "cm", source=str(source))
    design = build_design(panel, spec.target, list(spec.features))
    frame = pd.DataFrame({"month_id": design.months, "country_id": design.units,
                          spec.target: design.y})
    names = {}
    for j, name in enumerate(design.feature_names):
        column = f"f{j + 1:02d}"
        frame[column] = design.X[:, j]
        names[column] = name
    frame = frame[frame["month_id"] <= TEST_LAST]  # what the VIEWS loader gives calibration
    frame.to_parquet(folder / "peer_input.parquet", index=False)
    config = _stepshifter_config(spec)
    (folder / "peer_config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "ewspipe_spec.json").write_text(json.dumps({
        "algorithm": spec.algorithm, "target": spec.target, "features": list(spec.features),
        "hyperparameters": spec.hyperparameters_dict(),
    }), encoding="utf-8")
    return {"features": names, "rows": len(frame), "nan": int(frame.isna().sum().sum())}


# =============================================================================================
# ewspipe-side children
# =============================================================================================


def _groups(evaluation: Any) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for scheme, table in evaluation.groups.items():
        per: dict[str, dict[str, float]] = {}
        for row in table.itertuples(index=False):
            per.setdefault(str(int(row.group)), {})[row.metric] = float(row.value)
        out[scheme] = per
    return out


def _child_eval(folder: Path, case: str, warm: int) -> dict[str, Any]:
    """Score the aligned arrays with ewspipe: build ``Scored``, run ``evaluate`` (timed)."""
    import numpy as np

    from ewspipe.evaluation import evaluate
    from ewspipe.evaluation.schemes import Scored

    t_load = time.perf_counter()
    arrays = {k: np.load(folder / f"{k}.npy") for k in
              ("actual", "month", "unit", "origin", "step", "point")}
    point = arrays["point"]
    samples = point[:, None] if case == "point" else np.load(folder / "samples.npy")
    load_s = time.perf_counter() - t_load
    metrics = ["mse", "msle", "rmsle"] if case == "point" else ["crps"]
    times, result = [], None
    for _ in range(1 + warm):
        t0 = time.perf_counter()
        scored = Scored(origin=arrays["origin"], step=arrays["step"], month_id=arrays["month"],
                        unit=arrays["unit"], actual=arrays["actual"], point=point,
                        samples=samples)
        result = evaluate(scored, metrics)
        times.append(time.perf_counter() - t0)
    return {"rows": len(point), "samples": int(samples.shape[1]), "load_s": load_s,
            "cold_s": times[0], "warm_median_s": statistics.median(times[1:]) if warm else None,
            "all_s": times, "groups": _groups(result)}


def _read_cm_panel(source: Path) -> Any:
    from ewspipe.panel.schema import validate_panel
    from ewspipe.panel.sources.table import read_table

    panel, _ = validate_panel(read_table(source), "cm", source=str(source))
    return panel


def _save_forecast(path: Path, forecast: Any) -> int:
    import numpy as np

    frame = forecast.frame
    np.savez(path, origin=frame["origin"].to_numpy(np.int64),
             step=frame["step"].to_numpy(np.int64), month_id=frame["month_id"].to_numpy(np.int64),
             unit=frame[forecast.unit_column].to_numpy(np.int64), values=forecast.samples)
    return len(frame)


def _rolling(model: Any, design: Any) -> Any:
    from ewspipe.models.forecast import Forecast

    steps = list(range(1, STEPS + 1))
    return Forecast.concat([model.predict(design, origin=o, steps=steps)
                            for o in range(TRAIN_LAST, TRAIN_LAST + SEQUENCES)])


def _child_baselines(source: Path, out: Path, specs_file: Path) -> dict[str, Any]:
    """ewspipe's baselines with the shipped hyperparameters, rolling origin, to .npz."""
    from ewspipe.features.build import build_design
    from ewspipe.models import registry

    specs = json.loads(specs_file.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    design = build_design(_read_cm_panel(source), TARGET, [])
    t1 = time.perf_counter()
    seconds, rows = {}, {}
    for name, spec in specs.items():
        s0 = time.perf_counter()
        model = registry.create(spec["algorithm"], spec["hyperparameters"])
        model.fit(design, train_last=TRAIN_LAST)
        forecast = _rolling(model, design)
        seconds[name] = time.perf_counter() - s0
        rows[name] = _save_forecast(out / f"{name}.npz", forecast)
    return {"load_s": t1 - t0, "fit_predict_s": time.perf_counter() - t1, "model_s": seconds,
            "rows": rows}


def _child_stepshifter(source: Path, out: Path, spec_file: Path) -> dict[str, Any]:
    """ewspipe's stepshifter: read + validate, features, fit on 121-444, 13 origins."""
    from ewspipe.features.build import build_design
    from ewspipe.models import registry

    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    panel = _read_cm_panel(source)
    t1 = time.perf_counter()
    design = build_design(panel, spec["target"], spec["features"])
    t2 = time.perf_counter()
    model = registry.create(spec["algorithm"], spec["hyperparameters"])
    model.fit(design, train_last=TRAIN_LAST)
    t3 = time.perf_counter()
    forecast = _rolling(model, design)
    t4 = time.perf_counter()
    rows = _save_forecast(out / "predictions.npz", forecast)
    return {"load_s": t1 - t0, "features_s": t2 - t1, "fit_s": t3 - t2, "predict_s": t4 - t3,
            "fit_predict_s": t4 - t2, "rows": rows}


# =============================================================================================
# a round: ewspipe run, then peer run, each isolated; then the comparison (not timed)
# =============================================================================================


class _TreeRss:
    """Peak of the summed RSS of every process below this one, sampled every RSS_POLL_S.

    ``getrusage`` reports the largest single process; a peer that fits in worker processes
    (views-stepshifter uses a process pool) holds more than that, so the sum is sampled too.
    """

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._page_kib = os.sysconf("SC_PAGE_SIZE") // 1024

    def __enter__(self) -> _TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            children: dict[int, list[int]] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                children.setdefault(int(fields[1]), []).append(int(entry))
            total, todo = 0, list(children.get(me, []))
            while todo:
                pid = todo.pop()
                todo += children.get(pid, [])
                try:
                    with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                        total += int(fh.read().split()[1]) * self._page_kib
                except (OSError, ValueError, IndexError):
                    continue
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(RSS_POLL_S)


def _last_json(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.strip().splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError("no JSON document in the output")
    return json.loads(lines[-1])


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _run_side(argv: list[str], workdir: Path, label: str) -> dict[str, Any]:
    side_dir = workdir / label
    shutil.rmtree(side_dir, ignore_errors=True)
    side_dir.mkdir(parents=True)
    with _TreeRss() as tree:
        run = measure(argv, cwd=side_dir, timeout_s=SIDE_TIMEOUT_S)
    record: dict[str, Any] = {
        "wall_s": round(run.wall_s, 3), "cpu_s": round(run.cpu_s, 3),
        "peak_rss_mib": round(run.peak_rss_mib, 1),
        "tree_rss_mib": round(tree.peak_kib / 1024, 1), "dir": str(side_dir),
    }
    if run.returncode != 0:
        record["error"] = f"exit {run.returncode}: {_tail(run.stderr)}"
        return record
    try:
        record["doc"] = _last_json(run.stdout)
    except ValueError as exc:
        record["error"] = f"{exc}; stderr: {_tail(run.stderr)}"
    return record


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _compare_eval(e_doc: dict[str, Any], p_doc: dict[str, Any]) -> dict[str, Any]:
    worst, n, missing = 0.0, 0, []
    for scheme, groups in e_doc["groups"].items():
        theirs = p_doc["groups"].get(scheme, {})
        for group, values in groups.items():
            for metric, value in values.items():
                other = theirs.get(group, {}).get(metric)
                if other is None:
                    missing.append(f"{scheme}/{group}/{metric}")
                    continue
                worst = max(worst, _rel(value, other))
                n += 1
    extra = sum(len(v) for g in p_doc["groups"].values() for v in g.values()) - n
    return {"values": n, "max_rel_diff": worst, "missing": missing[:5], "n_missing": len(missing),
            "peer_only": extra, "rows": [e_doc["rows"], p_doc["rows"]]}


def _actuals() -> Any:
    import pandas as pd

    panel = _read_cm_panel(_cm_source())
    frame = panel.frame
    return pd.DataFrame({"month_id": frame["month_id"].to_numpy(),
                         "country_id": frame["country_id"].to_numpy(),
                         "value": frame[TARGET].to_numpy()})


def _score(path: Path, actuals: Any, as_float32: bool = False) -> dict[str, Any]:
    """MSLE (of the point, i.e. the sample mean) and, for samples, CRPS: ewspipe's code for
    both sides, so the formula cannot differ."""
    import numpy as np
    import pandas as pd

    from ewspipe.evaluation import evaluate, join_actuals
    from ewspipe.models.forecast import Forecast

    data = np.load(path)
    values = data["values"].astype(np.float32 if as_float32 else np.float64).astype(np.float64)
    order = np.lexsort((data["unit"], data["step"], data["origin"]))
    frame = pd.DataFrame({"origin": data["origin"][order], "step": data["step"][order],
                          "month_id": data["month_id"][order], "country_id": data["unit"][order]})
    values = values[order]
    forecast = Forecast(frame=frame, point=values.mean(axis=1), samples=values,
                        unit_column="country_id")
    scored = join_actuals(forecast, actuals)
    metrics = ["msle"] + (["crps"] if values.shape[1] > 1 else [])
    result = evaluate(scored, metrics)
    keys = (data["origin"][order] * 1_000 + data["step"][order]) * 1_000_000 + data["unit"][order]
    return {"rows": len(frame), "scored": result.n_scored, "samples": int(values.shape[1]),
            **{m: result.pooled[m] for m in metrics}, "_keys": keys}


def _compare_baselines(e_side: dict[str, Any], p_side: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    actuals = _actuals()
    out: dict[str, Any] = {}
    for name, peer_model in BASELINES.items():
        ours = _score(Path(e_side["dir"]) / f"{name}.npz", actuals)
        theirs = _score(Path(p_side["dir"]) / f"{peer_model}.npz", actuals)
        same_rows = bool(np.array_equal(ours.pop("_keys"), theirs.pop("_keys")))
        entry = {"ewspipe": ours, "peer": theirs, "same_rows": same_rows,
                 "msle_rel_diff": _rel(ours["msle"], theirs["msle"])}
        if name in DETERMINISTIC:  # the peer stores predictions as float32 (views-frames)
            as32 = _score(Path(e_side["dir"]) / f"{name}.npz", actuals, as_float32=True)
            entry["msle_rel_diff_float32"] = _rel(as32["msle"], theirs["msle"])
        out[name] = entry
    return out


def _compare_stepshifter(e_side: dict[str, Any], p_side: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    actuals = _actuals()
    ours = _score(Path(e_side["dir"]) / "predictions.npz", actuals)
    theirs = _score(Path(p_side["dir"]) / "predictions.npz", actuals)
    k_ours, k_theirs = ours.pop("_keys"), theirs.pop("_keys")
    common = np.intersect1d(k_ours, k_theirs)
    return {"ewspipe": ours, "peer": theirs, "same_rows": bool(np.array_equal(k_ours, k_theirs)),
            "common_rows": len(common), "only_ewspipe": len(k_ours) - len(common),
            "only_peer": len(k_theirs) - len(common)}


_COMPARE: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "eval": lambda e, p: _compare_eval(e["doc"], p["doc"]),
    "baselines": _compare_baselines,
    "stepshifter": _compare_stepshifter,
}


def _round(spec_file: Path) -> dict[str, Any]:
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    workdir = Path(tempfile.mkdtemp(prefix="round-", dir=spec_file.parent))
    try:
        out: dict[str, Any] = {"ewspipe": _run_side(spec["ewspipe"], workdir, "ewspipe")}
        if spec.get("peer_unavailable"):
            out["peer"] = {"error": spec["peer_unavailable"], "unavailable": True}
        else:
            out["peer"] = _run_side(spec["peer"], workdir, "peer")
        if "error" not in out["ewspipe"] and "error" not in out["peer"]:
            out["comparison"] = _COMPARE[spec["kind"]](out["ewspipe"], out["peer"])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for side in ("ewspipe", "peer"):
        out[side].pop("dir", None)
    return out


# =============================================================================================
# the harness side: one case per pair, rounds accumulated into the side-by-side table
# =============================================================================================


@dataclass(frozen=True)
class _Side:
    name: str  # e.g. "ewspipe 0.1.0" or "views-evaluation 2.0.0"
    display: str  # the command as documented


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt_s(value: float) -> str:
    return f"{value:,.3f}" if value < 10 else f"{value:,.2f}"


def _ratio(peer: float, ours: float) -> str:
    return f"{peer / ours:,.2f}x" if ours > 0 else "n/a"


class _Rounds:
    """The rounds seen so far for one pair; renders the table after each."""

    def __init__(self, kind: str, ewspipe: _Side, peer: _Side, inner: tuple[str, str],
                 check: Callable[[list[dict[str, Any]]], tuple[list[str], list[str]]]) -> None:
        self.kind, self.ewspipe, self.peer = kind, ewspipe, peer
        self.inner_key, self.inner_label = inner
        self.check = check
        self.rounds: list[dict[str, Any]] = []

    def verify(self, stdout: str) -> str:
        try:
            doc = _last_json(stdout)
        except ValueError as exc:
            raise VerificationError(f"no round record in the output ({exc})") from exc
        if "error" in doc["ewspipe"]:
            raise VerificationError(f"the ewspipe run failed: {doc['ewspipe']['error']}")
        self.rounds.append(doc)
        peer_ok = [r for r in self.rounds if "error" not in r["peer"]]
        problems, lines = self.check(peer_ok) if peer_ok else ([], [])
        if problems:
            raise VerificationError("; ".join(problems))
        return self._render(peer_ok, lines)

    def _stats(self, side: str, rounds: list[dict[str, Any]]) -> dict[str, float]:
        recs = [r[side] for r in rounds]
        walls = [x["wall_s"] for x in recs]
        inner = [x["doc"][self.inner_key] for x in recs if x.get("doc")]
        return {"wall": _median(walls), "min": min(walls), "max": max(walls),
                "cpu": _median([x["cpu_s"] for x in recs]),
                "rss": max(x["peak_rss_mib"] for x in recs),
                "tree": max(x["tree_rss_mib"] for x in recs),
                "inner": _median(inner) if inner else float("nan")}

    def _row(self, name: str, s: dict[str, float]) -> str:
        return (f"| {name} | {_fmt_s(s['wall'])} | {_fmt_s(s['min'])} .. {_fmt_s(s['max'])} | "
                f"{s['rss']:,.0f} | {s['tree']:,.0f} | {_fmt_s(s['cpu'])} | "
                f"{_fmt_s(s['inner'])} |")

    def _render(self, peer_ok: list[dict[str, Any]], lines: list[str]) -> str:
        n = len(self.rounds)
        ours = self._stats("ewspipe", self.rounds)
        head = [
            f"| side ({n} alternating run{'s' if n > 1 else ''} each) | wall median (s) | "
            f"wall min .. max (s) | peak RSS max (MiB) | process tree RSS max (MiB) | "
            f"CPU median (s) | {self.inner_label} median (s) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            self._row(self.ewspipe.name, ours),
        ]
        if peer_ok:
            theirs = self._stats("peer", peer_ok)
            head += [
                self._row(self.peer.name, theirs),
                f"| **ratio {self.peer.name.split()[0]} / ewspipe** | "
                f"**{_ratio(theirs['wall'], ours['wall'])}** | | "
                f"{_ratio(theirs['rss'], ours['rss'])} | {_ratio(theirs['tree'], ours['tree'])} "
                f"| {_ratio(theirs['cpu'], ours['cpu'])} | "
                f"**{_ratio(theirs['inner'], ours['inner'])}** |",
            ]
        failed = [r["peer"]["error"] for r in self.rounds if "error" in r["peer"]]
        if failed:
            reason = failed[-1].strip()
            head += ["", f"**{self.peer.name} could not run** ({len(failed)} of {n} rounds); no "
                     f"peer figure is reported for them. Exact reason:", "", "```text",
                     reason, "```"]
        head += ["", "Commands (each run in a fresh working directory; the rounds alternate "
                 "ewspipe, peer, ewspipe, ...):", "", "```sh", self.ewspipe.display,
                 self.peer.display, "```"]
        if lines:
            head += ["", *lines]
        return "\n".join(head)


# --- checks per pair -------------------------------------------------------------------------


def _check_eval(rounds: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    problems, comps = [], [r["comparison"] for r in rounds if "comparison" in r]
    for c in comps:
        if c["n_missing"] or c["peer_only"] or c["max_rel_diff"] > EQUAL_REL:
            problems.append(
                f"ewspipe and views-evaluation disagree: max rel. diff {c['max_rel_diff']:.2e} "
                f"over {c['values']} values (tolerance {EQUAL_REL:g}); missing {c['missing']}, "
                f"peer-only {c['peer_only']}")
    last = comps[-1]
    worst = max(c["max_rel_diff"] for c in comps)
    ours = rounds[-1]["ewspipe"]["doc"]
    theirs = rounds[-1]["peer"]["doc"]
    return problems, [
        f"Equal results, checked every round: all {last['values']} values (every step, month "
        f"and sequence group of every metric) agree to {worst:.1e} relative (tolerance "
        f"{EQUAL_REL:g}) on {last['rows'][0]:,} rows. Timed call: ewspipe `Scored(...)` + "
        f"`evaluate(...)` (which also computes the pooled values), views-evaluation "
        f"`EvaluationFrame(...)` + `NativeEvaluator.evaluate(...)`; one cold call then "
        f"{EVAL_WARM} warm ones per run, the column is the median of the runs' warm medians. "
        f"Last run, cold / warm: ewspipe {ours['cold_s']:.3f} / {ours['warm_median_s']:.3f} s, "
        f"views-evaluation {theirs['cold_s']:.3f} / {theirs['warm_median_s']:.3f} s.",
    ]


def _check_baselines(rounds: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    problems = []
    comps = [r["comparison"] for r in rounds if "comparison" in r]
    for c in comps:
        for name in DETERMINISTIC:
            e = c[name]
            if not e["same_rows"]:
                problems.append(f"{name}: the two sides predicted different (origin, step, "
                                "country) rows")
            if e["msle_rel_diff_float32"] > EQUAL_REL:
                problems.append(f"{name}: MSLE {e['ewspipe']['msle']:.10f} vs "
                                f"{e['peer']['msle']:.10f} (float32-rounded: rel. diff "
                                f"{e['msle_rel_diff_float32']:.1e})")
    c = comps[-1]
    rows = ["| ewspipe model | views-baseline model | rows | ewspipe MSLE | views-baseline MSLE "
            "| rel. diff | ewspipe CRPS | views-baseline CRPS |", "|---|---|---:|---:|---:|---:|"
            "---:|---:|"]
    for name, peer_model in BASELINES.items():
        e = c[name]
        crps_e = f"{e['ewspipe']['crps']:.3f}" if "crps" in e["ewspipe"] else ""
        crps_p = f"{e['peer']['crps']:.3f}" if "crps" in e["peer"] else ""
        rows.append(f"| {name} | {peer_model} | {e['ewspipe']['scored']:,} | "
                    f"{e['ewspipe']['msle']:.6f} | {e['peer']['msle']:.6f} | "
                    f"{e['msle_rel_diff']:.1e} | {crps_e} | {crps_p} |")
    worst32 = max(c2[n]["msle_rel_diff_float32"] for c2 in comps for n in DETERMINISTIC)
    return problems, [
        "Same protocol on both sides: real cm data, calibration, 13 rolling origins 444..456 x "
        "36 steps; each origin uses data up to the origin only (views-baseline is fitted per "
        "origin with `partition_dict = {train: (121, o), test: (o + 1, o + 36)}`, so its "
        "`train_end` is the origin), predictions for the countries present at the origin. Both "
        "sides' predictions are scored by the same code (ewspipe's `evaluate`); MSLE of the "
        "point (the sample mean for Conflictology). Last round:", "", *rows, "",
        f"Checked every round: zero, LOCF and Average predict the same rows and give the same "
        f"MSLE: equal to {worst32:.1e} relative once ewspipe's predictions are rounded to "
        "float32, the dtype views-frames stores predictions in (the raw difference in the table "
        "is that rounding). Conflictology draws its 100 samples with each package's own random "
        "generator, so its scores agree only statistically. Timed column: fit + predict of "
        "the four models at all 13 origins; before it, each side reads the Parquet into its "
        "own input type once (ewspipe: read, validate, `build_design`; views-baseline: pandas, "
        "then `to_feature_frame`), after it both write their predictions.",
    ]


def _check_stepshifter(learner: str, rounds: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    comps = [r["comparison"] for r in rounds if "comparison" in r]
    c = comps[-1]
    e, p = c["ewspipe"], c["peer"]
    ours, theirs = rounds[-1]["ewspipe"]["doc"], rounds[-1]["peer"]["doc"]
    msle = ", ".join(f"{x['comparison']['ewspipe']['msle']:.4f} / "
                     f"{x['comparison']['peer']['msle']:.4f}" for x in rounds if "comparison" in x)
    return [], [
        f"Accuracy, pooled MSLE on raw counts (same scoring code for both; log1p inside the "
        f"models only): ewspipe **{e['msle']:.4f}** on {e['scored']:,} rows, views-stepshifter "
        f"**{p['msle']:.4f}** on {p['scored']:,} rows (each round, ewspipe / peer: {msle}). "
        f"Rows: {c['common_rows']:,} (origin, step, country) rows in common, "
        f"{c['only_ewspipe']:,} only in ewspipe's forecast, {c['only_peer']:,} only in the "
        "peer's.",
        "",
        f"Same 20 features (ewspipe's `{STEPSHIFTER_MODEL}` feature list, computed by ewspipe "
        f"and handed to the peer as columns), same learner and hyperparameters ({learner}), "
        "log1p target, train 121-444, 13 origins x 36 steps. Differences that are the peer's "
        "design, not the set-up: it keeps only the "
        "countries present in the last month of its input (492) and zero-fills their earlier "
        "months, it seeds every step with the same `random_state` (ewspipe derives one seed per "
        "step), and darts predicts step s by rolling s one-step predictions of sub-model s.",
        "",
        f"Last run, inside the processes: ewspipe read + validate {ours['load_s']:.2f} s, "
        f"features {ours['features_s']:.2f} s, fit {ours['fit_s']:.2f} s, predict "
        f"{ours['predict_s']:.2f} s; views-stepshifter imports {theirs['import_s']:.1f} s, "
        f"read {theirs['load_s']:.2f} s, fit {theirs['fit_s']:.1f} s, predict "
        f"{theirs['predict_s']:.1f} s. The timed column is fit + predict at the 13 origins "
        "(ewspipe computes its features before it; the peer's came precomputed). Peak RSS is "
        "the largest single process; views-stepshifter fits and predicts in a pool of worker "
        "processes, so the process-tree column (sampled every "
        f"{RSS_POLL_S:g} s, summed over all processes of the run) is its real footprint.",
    ]


# --- cases -----------------------------------------------------------------------------------


def _ewspipe_argv(*args: str) -> list[str]:
    # the run directory is the cwd, so the repository goes on PYTHONPATH for this child only
    return ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "benchmarks.bench_peers",
            "ewspipe", *args]


def _peer(name: str) -> tuple[Path | None, str, str | None]:
    """(python, display name with versions, reason it is unavailable)."""
    from benchmarks.peers.install import PEERS, PeerUnavailable, ensure

    try:
        python, versions = ensure(name, log=_log)
    except PeerUnavailable as exc:
        return None, PEERS[name].requirement.replace("==", " "), str(exc)
    main = versions.pop(name, "?")
    deps = ", ".join(f"{k} {v}" for k, v in versions.items())
    return python, f"{name} {main} ({deps})", None


def _ewspipe_name() -> str:
    from importlib import metadata

    deps = ", ".join(f"{k} {metadata.version(k)}" for k in ("numpy", "pandas", "lightgbm"))
    return f"ewspipe {metadata.version('ewspipe')} ({deps})"


def _round_case(label: str, kind: str, workdir: Path, ewspipe: list[str], peer: list[str],
                peer_reason: str | None, rounds: _Rounds, note: str) -> Case:
    spec = {"kind": kind, "ewspipe": ewspipe, "peer": peer, "peer_unavailable": peer_reason}
    spec_file = workdir / f"round-{kind}.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")

    def argv(_: Path) -> list[str]:
        return ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "benchmarks.bench_peers",
                "round", str(spec_file)]

    return Case(label=label, display="python -m benchmarks.bench_peers round <pair spec>",
                argv=argv, verify=rounds.verify, target=None, note=note)


def _eval_cases() -> list[Case]:
    python, peer_name, reason = _peer("views-evaluation")
    cases = []
    for case in ("point", "crps"):
        folder = _workdir(f"eval-{case}")
        _log(f"peers_evaluation: writing the {case} inputs")
        size = _write_eval_inputs(folder, case)
        driver = PEERS_DIR / "drive_evaluation.py"
        peer_argv = [str(python), str(driver), str(folder), case, str(EVAL_WARM)] if python \
            else []
        rounds = _Rounds(
            "eval", _Side(_ewspipe_name(), f"PYTHONPATH=<repo> .venv/bin/python -m "
                          f"benchmarks.bench_peers ewspipe eval <inputs> {case} {EVAL_WARM}"),
            _Side(peer_name, f"benchmarks/peers/.venvs/views-evaluation/bin/python "
                  f"benchmarks/peers/drive_evaluation.py <inputs> {case} {EVAL_WARM}"),
            ("warm_median_s", "evaluate call"), _check_eval)
        what = (f"{size['rows']:,} rows ({POINT_CELLS:,} cells x 13 sequences x 36 steps), MSE "
                "+ MSLE + RMSLE" if case == "point" else
                f"{size['rows']:,} rows ({CRPS_UNITS:,} units x 13 x 36) x {CRPS_SAMPLES} "
                "samples, CRPS")
        cases.append(_round_case(
            f"{case}: ewspipe vs views-evaluation (one round = one run of each)", "eval",
            folder, _ewspipe_argv("eval", str(folder), case, str(EVAL_WARM)), peer_argv,
            reason, rounds,
            f"{what}, step-, month- and sequence-wise: the issue's shapes (as in `metrics`), "
            "seeded synthetic data written once as .npy files that both sides load. The table "
            "row above is the whole round; the side-by-side figures are below.",
        ))
    return cases


def _baseline_cases() -> list[Case]:
    python, peer_name, reason = _peer("views-baseline")
    source = _cm_source()
    folder = _workdir("baselines")
    catalog = _catalog()
    specs = {name: {"algorithm": catalog.get(name).algorithm,
                    "hyperparameters": catalog.get(name).hyperparameters_dict()}
             for name in BASELINES}
    draws = specs["past_draws"]["hyperparameters"]
    window = specs["year_average"]["hyperparameters"]["w"]
    if draws["w"] != window:
        raise SetupError("year_average and past_draws use different windows; views-baseline "
                         "takes one window_months for both")
    (folder / "specs.json").write_text(json.dumps(specs), encoding="utf-8")
    driver = PEERS_DIR / "drive_baseline.py"
    args = [str(TRAIN_LAST), str(SEQUENCES), str(STEPS), str(window), str(draws["n_samples"]),
            str(draws["seed"])]
    peer_argv = [str(python), str(driver), str(source), ".", *args] if python else []
    rounds = _Rounds(
        "baselines", _Side(_ewspipe_name(), "PYTHONPATH=<repo> .venv/bin/python -m "
                           "benchmarks.bench_peers ewspipe baselines <SHARED>/" + CM_FILE +
                           " . <specs of zero_line, last_value, year_average, past_draws>"),
        _Side(peer_name, "benchmarks/peers/.venvs/views-baseline/bin/python benchmarks/peers/"
              f"drive_baseline.py <SHARED>/{CM_FILE} . {' '.join(args)}"),
        ("fit_predict_s", "fit + predict"), _check_baselines)
    return [_round_case(
        "cm baselines: ewspipe vs views-baseline (one round = one run of each)", "baselines",
        folder, _ewspipe_argv("baselines", str(source), ".", str(folder / "specs.json")),
        peer_argv, reason, rounds,
        f"Zero, LOCF, Average (w = {window}) and Conflictology (w = {window}, "
        f"{draws['n_samples']} samples) on the real cm data, calibration (13 origins x 36 "
        "steps), the shipped model files' hyperparameters on both sides.",
    )]


def _stepshifter_cases() -> list[Case]:
    python, peer_name, reason = _peer("views-stepshifter")
    source = _cm_source()
    folder = _workdir("stepshifter")
    spec = _catalog().get(STEPSHIFTER_MODEL)
    _log("peers_stepshifter: writing ewspipe's features for the peer")
    info = _write_stepshifter_input(folder, source, spec)
    params = json.loads((folder / "peer_config.json").read_text(encoding="utf-8"))["parameters"]
    learner = "LightGBM " + ", ".join(f"{k} {v}" for k, v in params.items() if k != "verbose")
    driver = PEERS_DIR / "drive_stepshifter.py"
    peer_argv = [str(python), str(driver), str(folder / "peer_input.parquet"), ".",
                 str(folder / "peer_config.json")] if python else []
    rounds = _Rounds(
        "stepshifter", _Side(_ewspipe_name(), "PYTHONPATH=<repo> .venv/bin/python -m "
                             f"benchmarks.bench_peers ewspipe stepshifter <SHARED>/{CM_FILE} . "
                             f"<{STEPSHIFTER_MODEL} spec>"),
        _Side(peer_name, "benchmarks/peers/.venvs/views-stepshifter/bin/python benchmarks/"
              "peers/drive_stepshifter.py <features.parquet> . <config.json>"),
        ("fit_predict_s", "fit + predict"), functools.partial(_check_stepshifter, learner))
    return [_round_case(
        "cm LightGBM stepshifter, calibration: ewspipe vs views-stepshifter (one round = one "
        "run of each)", "stepshifter", folder,
        _ewspipe_argv("stepshifter", str(source), ".", str(folder / "ewspipe_spec.json")),
        peer_argv, reason, rounds,
        f"ewspipe's `{STEPSHIFTER_MODEL}` (20 features, LightGBM) against views-stepshifter's "
        f"`StepshifterModel` with the same features ({info['rows']:,} country-months up to "
        "month 492, written by ewspipe), learner and hyperparameters, on the real cm data: "
        "train 121-444, 13 origins x 36 steps.",
    )]


BENCHMARKS = [
    Benchmark(
        name="peers_evaluation",
        title="evaluation side by side: ewspipe vs views-evaluation 2.0.0",
        description=(
            "Evaluation throughput against the VIEWS team's views-evaluation 2.0.0 (its own "
            "venv, installed on demand), on the same arrays, with a check that both give the "
            f"same numbers to {EQUAL_REL:g}. Each harness run is one round: an ewspipe run then "
            "a views-evaluation run, each in its own fresh interpreter and measured alone "
            "(wall, CPU, peak RSS), so the runs alternate and the ratios come from one "
            "invocation. Ratio = peer / ewspipe (above 1: ewspipe is faster or smaller)."
        ),
        cases=_eval_cases,
    ),
    Benchmark(
        name="peers_baselines",
        title="baselines side by side: ewspipe vs views-baseline 1.0.2",
        description=(
            "The four baselines views-baseline 1.0.2 shares with ewspipe, on the real cm data "
            "and the calibration protocol, scored by the same code: the deterministic ones must "
            "give the same MSLE. Alternating rounds as in `peers_evaluation`; ratio = peer / "
            "ewspipe."
        ),
        cases=_baseline_cases,
    ),
    Benchmark(
        name="peers_stepshifter",
        title="LightGBM stepshifter side by side: ewspipe vs views-stepshifter 1.4.0",
        description=(
            "One LightGBM direct multi-step model with the same features, learner and "
            "hyperparameters on the calibration protocol (real cm data, 13 origins x 36 steps): "
            "wall time, peak memory and pooled MSLE of each side. Alternating rounds as in "
            "`peers_evaluation`; views-stepshifter takes minutes per run, so `make bench` runs "
            "this pair with `--repeats 1`. Ratio = peer / ewspipe."
        ),
        cases=_stepshifter_cases,
    ),
]


# =============================================================================================
# entry point of the children
# =============================================================================================


def _main(argv: list[str]) -> int:
    usage = ("usage: python -m benchmarks.bench_peers ewspipe eval|baselines|stepshifter ... | "
             "round SPEC.json")
    if len(argv) >= 2 and argv[0] == "round":
        print(json.dumps(_round(Path(argv[1]))))
        return 0
    if len(argv) >= 2 and argv[0] == "ewspipe":
        task, args = argv[1], argv[2:]
        if task == "eval" and len(args) == 3:
            doc = _child_eval(Path(args[0]), args[1], int(args[2]))
        elif task == "baselines" and len(args) == 3:
            doc = _child_baselines(Path(args[0]), Path(args[1]), Path(args[2]))
        elif task == "stepshifter" and len(args) == 3:
            doc = _child_stepshifter(Path(args[0]), Path(args[1]), Path(args[2]))
        else:
            print(usage, file=sys.stderr)
            return 2
        print(json.dumps(doc))
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
