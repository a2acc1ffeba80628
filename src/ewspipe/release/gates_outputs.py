"""The staging gates that judge run outputs: inference, performance, forecast diff.

Inputs are what the sides' child processes wrote (prediction store partitions of ``ewspipe
run``, evaluation runs of ``ewspipe evaluate``), read back here with the store's own formats;
the judging is plain numpy/pandas plus the Diebold-Mariano comparison of
:mod:`ewspipe.evaluation.compare`. Forecast size is judged by the monthly QA's own
plausibility rule (:mod:`ewspipe.evaluation.plausibility`, ``[qa] max_forecast_factor`` of
production's settings), recomputed here from the stored forecasts rather than trusted from
the candidate's own report.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ewspipe.errors import EwspipeError
from ewspipe.evaluation.compare import compare_forecasts
from ewspipe.evaluation.plausibility import (
    RULE,
    check_forecast,
    check_values,
    largest_observed,
    plausibility_ceiling,
)
from ewspipe.evaluation.schemes import join_actuals
from ewspipe.layout import StateFolder
from ewspipe.panel.schema import TIME_COLUMN, Panel
from ewspipe.release.sides import CommandResult
from ewspipe.release.staging_report import GateResult
from ewspipe.settings import QaSettings, ReleaseSettings
from ewspipe.store.predictions import read_forecast, read_forecast_metadata
from ewspipe.store.run_record import MonthlyRunRecord

__all__ = ["StoredForecast", "forecast_diff_gate", "implausible_forecasts", "inference_gate",
           "performance_gate", "read_run_forecasts"]

KEYS = ["origin", "step", "month_id", "unit"]
DEFAULT_FACTOR = QaSettings().max_forecast_factor


@dataclass(frozen=True)
class StoredForecast:
    """One model's forecast of one run, rows sorted by (origin, step, unit)."""

    model: str
    level: str
    status: str
    kind: str
    frame: pd.DataFrame  # origin, step, month_id, unit, point
    samples: np.ndarray  # (rows, samples)
    target: str = "ged_sb"


def _read_partition(path: Path, part: Mapping[str, Any]) -> StoredForecast:
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"ewspipe", b"{}"))
    unit = meta.get("unit_column") or ("country_id" if part["level"] == "cm" else "priogrid_gid")
    frame = pd.DataFrame({
        "origin": table.column("origin").to_numpy().astype(np.int64),
        "step": table.column("step").to_numpy().astype(np.int64),
        "month_id": table.column("month_id").to_numpy().astype(np.int64),
        "unit": table.column(unit).to_numpy().astype(np.int64),
        "point": table.column("point").to_numpy().astype(np.float64),
    })
    col = table.column("samples").combine_chunks()
    samples = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    samples = samples.reshape(len(frame), -1) if len(frame) else samples.reshape(0, 1)
    order = np.lexsort((frame["unit"], frame["step"], frame["origin"]))
    return StoredForecast(part["model"], part["level"], part.get("status", ""),
                          part.get("kind", "model"), frame.iloc[order].reset_index(drop=True),
                          samples[order], str(part.get("target") or "ged_sb"))


def read_run_forecasts(env_state: Path, run: MonthlyRunRecord) -> dict[str, StoredForecast]:
    """Every partition a monthly run (``ewspipe run --json``) stored, by model name."""
    parts = run.outputs.partitions or []
    folder = StateFolder(env_state)
    return {p["model"]: _read_partition(folder.resolve(p["path"]), p) for p in parts}


# --------------------------------------------------------------------------- 4. inference


def _implausible(fc: StoredForecast, ceiling: float, unit_column: str) -> str | None:
    f = fc.frame
    found = check_values(f["point"].to_numpy(), ceiling=ceiling, unit_column=unit_column,
                         units=f["unit"].to_numpy(), months=f["month_id"].to_numpy(),
                         origins=f["origin"].to_numpy(), steps=f["step"].to_numpy())
    return None if found is None else found.message()


def _problems(fc: StoredForecast, units: np.ndarray, last: int, steps: int,
              ceiling: float, unit_column: str) -> list[str]:
    f = fc.frame
    out = []
    implausible = _implausible(fc, ceiling, unit_column)
    if implausible is not None:
        out.append(implausible)
    if not (np.isfinite(f["point"].to_numpy()).all() and np.isfinite(fc.samples).all()):
        bad = int((~np.isfinite(f["point"].to_numpy())).sum())
        out.append(f"non-finite values ({bad} point rows)")
    if (f["point"] < 0).any() or (fc.samples < 0).any():
        out.append(f"negative values ({int((f['point'] < 0).sum())} point rows)")
    if f.duplicated(["origin", "step", "unit"]).any():
        out.append(f"{int(f.duplicated(['origin', 'step', 'unit']).sum())} duplicated "
                   "(origin, step, unit) keys")
    if set(f["origin"].unique()) != {last}:
        out.append(f"origins {sorted(f['origin'].unique().tolist())[:5]}, expected the last "
                   f"observed month {last}")
    if sorted(f["step"].unique().tolist()) != list(range(1, steps + 1)):
        out.append(f"steps {sorted(f['step'].unique().tolist())[:5]}..., expected 1..{steps}")
    months = set(f["month_id"].unique().tolist())
    if months != set(range(last + 1, last + steps + 1)) or not (
            f["month_id"] == f["origin"] + f["step"]).all():
        out.append(f"months {min(months, default=None)}..{max(months, default=None)}, "
                   f"expected {last + 1}..{last + steps} with month = origin + step")
    have = set(f["unit"].unique().tolist())
    want = set(units.tolist())
    if have != want:
        missing, extra = sorted(want - have), sorted(have - want)
        out.append(f"entity set differs from the {len(want)} units of month {last}: "
                   f"{len(missing)} missing (e.g. {missing[:5]}), {len(extra)} extra "
                   f"(e.g. {extra[:5]})")
    elif len(f) != len(want) * steps:
        out.append(f"{len(f)} rows for {len(want)} units x {steps} steps")
    return out


def _identical(a: StoredForecast, b: StoredForecast) -> bool:
    return (a.frame[KEYS].equals(b.frame[KEYS])
            and np.array_equal(a.frame["point"].to_numpy(), b.frame["point"].to_numpy(),
                               equal_nan=True)
            and a.samples.shape == b.samples.shape
            and np.array_equal(a.samples, b.samples, equal_nan=True))


def inference_gate(
    expected: Sequence[Mapping[str, Any]],
    first: CommandResult,
    repeat: CommandResult | None,
    forecasts: Mapping[str, StoredForecast] | None,
    repeated: Mapping[str, StoredForecast] | None,
    *,
    panels: Mapping[str, tuple[str, Panel]],
    steps: int,
    artifacts: Mapping[str, Any],
    max_forecast_factor: float = DEFAULT_FACTOR,
) -> GateResult:
    """Every deployed and shadow model and ensemble forecast: the last month's units, steps
    1..``steps``, months L+1..L+steps, finite, non-negative, unique keys, below the
    plausibility ceiling (``max_forecast_factor`` x the largest count observed); the
    pipeline's own QA passed; artifacts reloaded (no retraining) and the repeated run
    identical to the first."""
    evidence: dict[str, Any] = {"run": first.to_dict(), "steps": steps, "items": {},
                                "artifacts": dict(artifacts)}
    if forecasts is None:
        evidence["error"] = first.error()
        # the run's progress lines name the task that failed ("FAILED forecast:<model>")
        evidence["failed_tasks"] = re.findall(r"FAILED (\S+)", first.stderr)
        where = f" in {', '.join(evidence['failed_tasks'])}" if evidence["failed_tasks"] else ""
        return GateResult("inference", "FAIL", f"the candidate's monthly run failed{where}: "
                          f"{first.error().splitlines()[-1] if first.error() else ''}", evidence)
    qa_failed: dict[str, list[str]] = {}
    run = MonthlyRunRecord.from_output(first.doc)
    if run is not None and run.qa is not None:
        evidence["pipeline_qa"] = run.qa.model_dump(exclude_unset=True)
        for check in run.qa.failed:
            qa_failed[str(check.get("model"))] = [str(p) for p in check.get("problems") or []]
    failures: list[str] = []
    ceilings: dict[tuple[str, str], float] = {}
    for item in expected:
        name = item["name"]
        fc = forecasts.get(name)
        if fc is None:
            failures.append(f"{name}: no forecast stored")
            evidence["items"][name] = {"status": item["status"], "kind": item["kind"],
                                       "problems": ["no forecast stored"]}
            continue
        sid, panel = panels[fc.level]
        key = (fc.level, fc.target)
        if key not in ceilings:
            ceilings[key] = plausibility_ceiling(largest_observed(panel, fc.target),
                                                 max_forecast_factor)
        problems = _problems(fc, panel.forecast_entities(), panel.last_month, steps,
                             ceilings[key], panel.unit_column)
        # the pipeline's own QA refused this forecast: reported even where the gate's checks
        # agree with the pipeline (the same rule gives the same words; shown once)
        problems += [f"the pipeline's QA failed: {p}" for p in qa_failed.pop(name, [])
                     if p not in problems]
        if repeated is not None:
            again = repeated.get(name)
            if again is None:
                problems.append("missing from the repeated run")
            elif not _identical(fc, again):
                diff = np.abs(fc.frame["point"].to_numpy() - again.frame["point"].to_numpy()) \
                    if len(fc.frame) == len(again.frame) else None
                problems.append("the repeated run differs" + (
                    f" (max |point diff| {np.nanmax(diff):.3g})" if diff is not None else ""))
        evidence["items"][name] = {"status": item["status"], "kind": item["kind"],
                                   "level": fc.level, "snapshot": sid, "rows": len(fc.frame),
                                   "problems": problems}
        failures += [f"{name}: {p}" for p in problems]
    # QA failures of forecasts the gate did not look at (e.g. a baseline)
    failures += [f"{model}: the pipeline's QA failed: {'; '.join(problems)}"
                 for model, problems in sorted(qa_failed.items())]
    if repeat is None or repeated is None:
        failures.append("the repeated run did not complete: "
                        + (repeat.error() if repeat is not None else "not run"))
    elif artifacts.get("retrained"):
        failures.append(f"the repeated run retrained {len(artifacts['retrained'])} "
                        "artifact(s) instead of reloading them")
    evidence["failures"] = failures
    if failures:
        return GateResult("inference", "FAIL", f"{len(failures)} problem(s): {failures[0]}",
                          evidence)
    if artifacts.get("code_changed"):
        return GateResult(
            "inference", "WARN", f"forecasts valid and the repeated run identical, but the "
            f"code changed during staging ({len(artifacts['code_changed'])} artifact(s) "
            "retrained under a new code fingerprint); stage again on a quiet installation",
            evidence)
    return GateResult(
        "inference", "PASS",
        f"{len(expected)} deployed/shadow forecasts valid ({steps} steps, last month's units, "
        f"finite, non-negative, plausible); {artifacts.get('reloaded', 0)} artifacts reloaded "
        "hash-verified; the repeated run is identical", evidence)


# --------------------------------------------------------------------------- 6. performance


def _actuals(panel: Panel, target: str) -> pd.DataFrame:
    f = panel.frame
    return pd.DataFrame({TIME_COLUMN: f[TIME_COLUMN].to_numpy(),
                         panel.unit_column: f[panel.unit_column].to_numpy(),
                         "value": f[target].to_numpy()})


def _entries(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["model"]: m for m in doc.get("models", [])}


def _pooled(entry: Mapping[str, Any], metric: str) -> float | None:
    value = ((entry.get("metrics") or {}).get("pooled") or {}).get(metric)
    return None if value is None or not math.isfinite(value) else float(value)


def _judged(entries: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Deployed ensembles; where a level has none, its deployed models."""
    ensembles = [e for e in entries.values()
                 if e.get("kind") == "ensemble" and e.get("status") == "deployed"]
    levels = {e["level"] for e in ensembles}
    models = [e for e in entries.values() if e.get("kind", "model") == "model"
              and e.get("status") == "deployed" and e["level"] not in levels]
    return ensembles + models


def _compare(prod: Mapping[str, Any], cand: Mapping[str, Any], prod_doc: Mapping[str, Any],
             cand_doc: Mapping[str, Any], panel: Panel, release: ReleaseSettings
             ) -> dict[str, Any]:
    fa, meta = read_forecast(Path(prod_doc["path"]) / prod["predictions"])
    fb, _ = read_forecast(Path(cand_doc["path"]) / cand["predictions"])
    actuals = _actuals(panel, meta.get("target") or "ged_sb")
    comp = compare_forecasts(join_actuals(fa, actuals), join_actuals(fb, actuals),
                             metric=release.metric, alpha=release.significance)
    pooled = comp.values["pooled"]
    rel = None
    if pooled.a is not None and pooled.b is not None:
        rel = (pooled.b - pooled.a) / pooled.a if pooled.a > 0 else (
            0.0 if pooled.b == pooled.a else math.inf)
    return {"production": pooled.a, "candidate": pooled.b, "delta": pooled.delta,
            "relative": rel, "verdict": comp.verdict,
            "p_value": comp.dm.p_value if comp.dm is not None else None,
            "dm_statistic": comp.dm.statistic if comp.dm is not None else None,
            "dm_reason": comp.dm_reason, "rows": comp.n_common}


def implausible_forecasts(doc: Mapping[str, Any], panels: Mapping[str, tuple[str, Panel]],
                          factor: float) -> tuple[list[dict[str, Any]], list[str]]:
    """Every model and ensemble of a stored evaluation run (``ewspipe evaluate --json``)
    whose forecast exceeds the plausibility ceiling on ``panels``' snapshot, its worst row
    each; and the entries that could not be read. Only the point column is read unless it
    exceeds the ceiling."""
    found: list[dict[str, Any]] = []
    unread: list[str] = []
    ceilings: dict[tuple[str, str], float] = {}
    root = Path(str(doc.get("path", "")))
    for entry in doc.get("models", []):
        name, level = entry.get("model"), entry.get("level")
        if level not in panels or not entry.get("predictions"):
            continue
        path = root / entry["predictions"]
        try:
            target = str(read_forecast_metadata(path).get("target") or "ged_sb")
            key = (level, target)
            if key not in ceilings:
                ceilings[key] = plausibility_ceiling(largest_observed(panels[level][1], target),
                                                     factor)
            point = pq.read_table(path, columns=["point"]).column("point").to_numpy()
            if not float(np.nanmax(point, initial=0.0)) > ceilings[key]:
                continue
            forecast, _ = read_forecast(path, samples=False)
        except (EwspipeError, OSError, KeyError, ValueError) as exc:
            unread.append(f"{name}: {exc}")
            continue
        worst = check_forecast(forecast, ceilings[key])
        if worst is not None:
            found.append({"model": name, "kind": entry.get("kind", "model"),
                          "status": entry.get("status"), "level": level, **worst.to_dict()})
    return found, unread


def _implausible_note(run_type: str, item: Mapping[str, Any]) -> str:
    return (f"{run_type} {item['model']}: forecast {item['value']:,.0f} for "
            f"{item['unit_column']} {item['unit']}, month {item['month_id']} (origin "
            f"{item['origin']}, step {item['step']}) above the plausibility ceiling "
            f"{item['ceiling']:,.0f} ({RULE}; {item['rows_above']:,} row(s) above)")


def _run_type_verdict(run_type: str, cand: CommandResult, prod: CommandResult | None,
                      panels: Mapping[str, tuple[str, Panel]], release: ReleaseSettings,
                      factor: float) -> tuple[str, list[str], dict[str, Any]]:
    metric = release.metric
    ev: dict[str, Any] = {"candidate_run": cand.to_dict(),
                          "production_run": prod.to_dict() if prod is not None else None}
    prod_ok = prod is not None and prod.returncode == 0 and prod.doc is not None
    if cand.returncode != 0 or cand.doc is None:
        ev["candidate_error"] = cand.error()
        if prod is not None and not prod_ok:
            ev["production_error"] = prod.error()
            return "SKIP", [f"{run_type}: neither side could be evaluated ({cand.error()})"], ev
        last = (cand.error().strip().splitlines() or [""])[-1]
        return "FAIL", [f"{run_type}: the candidate's evaluation failed: {last}"], ev
    cand_entries = _entries(cand.doc)
    prod_entries = _entries(prod.doc) if prod_ok and prod is not None and prod.doc else {}
    # any forecast above the plausibility ceiling fails the candidate, whatever its MSLE
    implausible, unread = implausible_forecasts(cand.doc, panels, factor)
    ev["implausible"] = implausible
    fails: list[str] = [_implausible_note(run_type, item) for item in implausible]
    fails += [f"{run_type} {u} (plausibility not checked)" for u in unread]
    if not prod_ok:
        ev["production_error"] = prod.error() if prod is not None else "no production branch"
    ev["run_ids"] = {"candidate": cand.doc.get("run_id"),
                     "production": prod.doc.get("run_id") if prod_ok and prod and prod.doc
                     else None}
    ev["models"] = {}
    for name, entry in sorted(cand_entries.items()):
        a = _pooled(prod_entries[name], metric) if name in prod_entries else None
        b = _pooled(entry, metric)
        ev["models"][name] = {
            "kind": entry.get("kind", "model"), "status": entry.get("status"),
            "production": a, "candidate": b,
            "delta": None if a is None or b is None else b - a,
            "relative": None if a is None or b is None or a <= 0 else (b - a) / a}
    warns: list[str] = [] if prod_ok else [f"{run_type}: production could not be evaluated "
                                           f"({ev['production_error']}); no regression test"]
    ev["judged"] = {}
    for entry in _judged(cand_entries):
        name, level = entry["model"], entry["level"]
        judged: dict[str, Any] = {"level": level, "kind": entry.get("kind", "model")}
        value = _pooled(entry, metric)
        if name in prod_entries and prod is not None and prod.doc is not None:
            try:
                cmp = _compare(prod_entries[name], entry, prod.doc, cand.doc,
                               panels[level][1], release)
            except EwspipeError as exc:
                cmp = {"error": str(exc)}
                warns.append(f"{run_type} {name}: not compared ({exc})")
            judged["vs_production"] = cmp
            rel = cmp.get("relative")
            if rel is not None and rel > release.tolerance:
                p = cmp["p_value"]
                msg = (f"{run_type} {name}: {metric} {cmp['production']:.4f} -> "
                       f"{cmp['candidate']:.4f} ({rel:+.1%}, tolerance {release.tolerance:.1%}"
                       f"), Diebold-Mariano p {'n/a' if p is None else f'{p:.2g}'}")
                (fails if cmp["verdict"] == "A better" else warns).append(
                    msg + ("" if cmp["verdict"] == "A better" else " (not significant)"))
        else:
            judged["vs_production"] = None
        baselines = {n: _pooled(e, metric) for n, e in cand_entries.items()
                     if e.get("status") == "baseline" and e["level"] == level}
        judged["baselines"] = baselines
        if not baselines:
            warns.append(f"{run_type} {name}: no baseline model at level {level} to beat")
        for bname, bvalue in sorted(baselines.items()):
            if value is None or bvalue is None or value >= bvalue:
                fails.append(f"{run_type} {name}: {metric} {value} does not beat baseline "
                             f"{bname} ({bvalue})")
        ev["judged"][name] = judged
    status = "FAIL" if fails else "WARN" if warns else "PASS"
    return status, fails + warns, ev


def performance_gate(evaluations: Mapping[str, tuple[CommandResult, CommandResult | None]],
                     panels: Mapping[str, tuple[str, Panel]],
                     release: ReleaseSettings, *,
                     max_forecast_factor: float = DEFAULT_FACTOR) -> GateResult:
    """Per run type (calibration, optionally validation): the candidate's evaluation vs
    production's on the same snapshot. FAIL when any of the candidate's forecasts (model or
    ensemble, any status) is above the plausibility ceiling (``max_forecast_factor`` x the
    largest count observed at its level: the monthly QA's rule), when a deployed ensemble's
    metric worsens by more than the tolerance with a significant Diebold-Mariano test, or
    no longer beats every baseline of its level."""
    order = {"PASS": 0, "SKIP": 1, "WARN": 2, "FAIL": 3}
    evidence: dict[str, Any] = {"metric": release.metric, "tolerance": release.tolerance,
                                "significance": release.significance,
                                "max_forecast_factor": max_forecast_factor, "run_types": {}}
    worst, notes, wild = "PASS", [], []
    for run_type, (cand, prod) in evaluations.items():
        status, found, ev = _run_type_verdict(run_type, cand, prod, panels, release,
                                              max_forecast_factor)
        evidence["run_types"][run_type] = {"status": status, "findings": found, **ev}
        n_wild = len(ev.get("implausible") or [])
        wild += found[:n_wild]  # implausible forecasts lead the summary
        notes += found[n_wild:]
        worst = max(worst, status, key=order.__getitem__)
    notes = wild + notes
    if worst == "PASS":
        judged = [f"{n} {j['vs_production']['relative']:+.1%}" if j.get("vs_production")
                  and j["vs_production"].get("relative") is not None else n
                  for rt in evidence["run_types"].values() for n, j in rt["judged"].items()]
        return GateResult("performance", "PASS", f"{release.metric}: no significant "
                          f"worsening beyond {release.tolerance:.1%} and every baseline beaten "
                          f"({', '.join(judged)})", evidence)
    return GateResult("performance", worst, "; ".join(notes[:3]), evidence)


# --------------------------------------------------------------------------- 7. forecast diff


def _diff_one(a: StoredForecast, b: StoredForecast, top: int) -> dict[str, Any]:
    fa = a.frame.set_index(["origin", "step", "unit"])["point"]
    fb = b.frame.set_index(["origin", "step", "unit"])["point"]
    both = pd.concat([fa.rename("production"), fb.rename("candidate")], axis=1, join="inner")
    total_a, total_b = float(both["production"].sum()), float(both["candidate"].sum())
    units = both.groupby(level="unit").mean()
    units["log_change"] = np.log1p(units["candidate"].clip(lower=0)) - np.log1p(
        units["production"].clip(lower=0))
    units["change"] = units["candidate"] - units["production"]
    ranked = units.reindex(units["change"].abs().sort_values(ascending=False).index)
    return {
        "rows_compared": len(both),
        "rows_only_production": len(fa) - len(both), "rows_only_candidate": len(fb) - len(both),
        "total_production": round(total_a, 3), "total_candidate": round(total_b, 3),
        "total_change": None if total_a == 0 else (total_b - total_a) / total_a,
        "max_unit_log_change": float(units["log_change"].abs().max()) if len(units) else 0.0,
        "top_units": [{"unit": int(u), "production_mean": round(float(r["production"]), 4),
                       "candidate_mean": round(float(r["candidate"]), 4),
                       "change": round(float(r["change"]), 4),
                       "log_change": round(float(r["log_change"]), 4)}
                      for u, r in ranked.head(top).iterrows()],
    }


def forecast_diff_gate(candidate: Mapping[str, StoredForecast] | None,
                       production: Mapping[str, StoredForecast] | None,
                       release: ReleaseSettings, *, reason: str | None = None) -> GateResult:
    """Candidate vs production forecasts of the same snapshot, model by model: totals and the
    units that move most. WARN when a deployed forecast's total moves by more than
    ``diff_max_total_change`` or a unit's mean by more than ``diff_max_unit_change`` in
    log1p."""
    if candidate is None or production is None:
        return GateResult("forecast_diff", "SKIP", f"not compared: {reason or 'no forecasts'}",
                          {"reason": reason})
    evidence: dict[str, Any] = {
        "max_total_change": release.diff_max_total_change,
        "max_unit_change": release.diff_max_unit_change,
        "only_candidate": sorted(set(candidate) - set(production)),
        "only_production": sorted(set(production) - set(candidate)), "models": {}}
    warns = []
    for name in sorted(set(candidate) & set(production)):
        d = _diff_one(production[name], candidate[name], release.diff_top_units)
        d["status"] = candidate[name].status
        evidence["models"][name] = d
        if candidate[name].status != "deployed":
            continue
        if d["total_change"] is not None and abs(d["total_change"]) > release.diff_max_total_change:
            warns.append(f"{name}: total {d['total_production']:.1f} -> "
                         f"{d['total_candidate']:.1f} ({d['total_change']:+.1%})")
        if d["max_unit_log_change"] > release.diff_max_unit_change:
            u = max(d["top_units"], key=lambda r: abs(r["log_change"]), default=None)
            warns.append(f"{name}: a unit's mean moves by {d['max_unit_log_change']:.2f} in "
                         "log1p" + (f" (e.g. unit {u['unit']}: {u['production_mean']} -> "
                                    f"{u['candidate_mean']})" if u else ""))
    if evidence["only_production"]:
        warns.append(f"no longer forecast: {', '.join(evidence['only_production'])}")
    if warns:
        return GateResult("forecast_diff", "WARN", "; ".join(warns[:3]), {
            **evidence, "warnings": warns})
    changes = [f"{n} {d['total_change']:+.1%}" for n, d in evidence["models"].items()
               if d["total_change"] is not None and d["status"] == "deployed"]
    return GateResult("forecast_diff", "PASS", "deployed forecasts within bounds"
                      + (f" (totals: {', '.join(changes)})" if changes else ""), evidence)
