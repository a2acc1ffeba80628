"""An evaluation run as one self-contained, offline HTML page (plus its figures as PNG files).

The page opens with the verdict: every deployed model and ensemble against the best
baseline of its level on the headline metric (pooled MSLE), with a Diebold-Mariano test
(``ewspipe.evaluation.compare``) saying "better", "no significant difference" or "worse".
Units are named (``ewspipe.geography.UnitNames``) wherever the page lists them.

Three steps, kept apart so each can be tested on its own:

* ``build_report`` turns plain inputs (the run record, each model's metric tables, forecast and
  actuals, the snapshots' manifests) into ``ReportData``: the tables, curves, calibration bins
  and per-cell errors the page shows. It reads no file and imports nothing from ``store`` or
  ``flows`` (the layer contract); ``ewspipe.flows.reporting`` gathers the inputs.
* ``render_report`` draws the figures (``plots``) and fills the page template; every text is
  escaped, every image is embedded as a base64 data URI and also written beside the page
  (``report_files`` lists what a report folder holds), and nothing is fetched from anywhere
  (no script, stylesheet or font links).
* ``publish_report`` renders into a temporary folder inside the run and swaps it in for
  ``report/``, so a failure leaves the previous report (or none) and never a half one.

Models are grouped by level: cm and pgm scores are on different units and are never ranked
together.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe import __version__
from ewspipe.arrays import Floats
from ewspipe.atomic import atomic_dir
from ewspipe.errors import InputError
from ewspipe.evaluation import plots
from ewspipe.evaluation.compare import DMResult, compare_forecasts
from ewspipe.evaluation.plots import Line
from ewspipe.evaluation.schemes import Scored, join_actuals
from ewspipe.geography import UnitNames
from ewspipe.models.forecast import Forecast
from ewspipe.panel.months import month_label

__all__ = [
    "REPORT_DIR",
    "REPORT_FILE",
    "CellErrors",
    "LevelSection",
    "ModelInput",
    "ModelRow",
    "ReportData",
    "ReportInputs",
    "VerdictRow",
    "build_report",
    "calibration_bins",
    "cell_msle",
    "publish_report",
    "render_report",
    "report_files",
]

REPORT_DIR = "report"
REPORT_FILE = "index.html"
PLOTTED_METRICS = ("msle", "mse", "crps")  # drawn by step and by target month
METRIC_ORDER = ("msle", "rmsle", "mse", "mae", "pearson", "mcr", "y_hat_bar", "crps",
                "twcrps", "mis", "coverage", "coverage_50", "coverage_90", "pit_coverage_50",
                "pit_coverage_90", "brier", "ap", "roc_auc")
METRIC_TITLES = {"msle": "MSLE", "rmsle": "RMSLE", "mse": "MSE", "mae": "MAE",
                 "pearson": "Pearson r", "mcr": "MCR", "y_hat_bar": "y_hat_bar", "crps": "CRPS",
                 "twcrps": "twCRPS", "mis": "MIS", "coverage": "coverage",
                 "coverage_50": "coverage 50 %", "coverage_90": "coverage 90 %",
                 "pit_coverage_50": "PIT 50 %", "pit_coverage_90": "PIT 90 %", "brier": "Brier",
                 "ap": "AP", "roc_auc": "ROC AUC"}
LOWER_IS_BETTER = frozenset({"msle", "rmsle", "mse", "mae", "crps", "twcrps", "mis", "brier"})
HIGHER_IS_BETTER = frozenset({"pearson", "ap", "roc_auc"})
SCHEME_VIEWS = (("step", "step-wise mean"), ("month", "month-wise mean"),
                ("sequence", "sequence-wise mean"))
CALIBRATION_EDGES = 10.0 ** np.arange(0.0, 7.01, 0.25) - 1.0  # bins on a log1p scale, 0 first
MIN_BIN_ROWS = 10
HEADLINE = "msle"  # the metric the verdict, the ranking and the DM test use
WORST_UNITS = 10  # rows of each "largest errors by unit" table
REPORT_SUFFIXES = (".html", ".png", ".svg")
WORDS = {"B better": "better", "A better": "worse",
         "no significant difference": "no significant difference"}


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ModelInput:
    """One model of the run as plain data.

    ``metrics`` is ``Evaluation.to_dict()``; ``info`` the model's entry in the run record plus
    its prediction file's metadata (target, artifact, ...). ``forecast`` and ``actuals``
    (columns month_id, the unit column, ``value``) feed the calibration plot and the error
    map; without them those are left out for this model and the page says so. ``forecast``
    may be a loader (a function returning it): models are then read one at a time, which
    keeps memory at one forecast for pgm runs of millions of rows per model (plus the best
    baseline's, held for the verdict's tests). ``info["kind"]`` is "model" or "ensemble".
    """

    name: str
    level: str
    status: str
    metrics: Mapping[str, Any]
    info: Mapping[str, Any] = field(default_factory=dict)
    forecast: Forecast | Callable[[], Forecast] | None = None
    actuals: pd.DataFrame | None = None


@dataclass(frozen=True)
class ReportInputs:
    """The run record (``run.json``), its models, the manifest of each level's snapshot and
    the names of each level's units (ids stay ids for a level without names)."""

    record: Mapping[str, Any]
    models: Sequence[ModelInput]
    snapshots: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    names: Mapping[str, UnitNames] = field(default_factory=dict)


# --------------------------------------------------------------------------- gathered data


@dataclass(frozen=True)
class ModelRow:
    name: str
    status: str
    n_samples: int
    target: str
    rows: int
    n_scored: int
    n_unscored: int
    unscored_months: tuple[int, ...]
    pooled: Mapping[str, float | None]
    means: Mapping[str, Mapping[str, float | None]]
    notes: tuple[str, ...]

    @property
    def baseline(self) -> bool:
        return self.status == "baseline"


@dataclass(frozen=True)
class CellErrors:
    """Mean squared log error per PRIO-GRID cell of one model over the whole run."""

    model: str
    gid: npt.NDArray[np.int64]
    msle: Floats


@dataclass(frozen=True)
class VerdictRow:
    """One judged model against the best baseline of its level on the headline metric.

    ``value``/``baseline_value`` are the metric on the rows both predict (the rows the DM
    test compares); ``dm`` is ``compare_forecasts(baseline, model).dm`` (differences are
    model - baseline, so a negative statistic favours the model). ``verdict`` is "better",
    "no significant difference", "worse" or "not tested" (``reason`` says why).
    """

    model: str
    kind: str
    status: str
    baseline: str | None
    metric: str
    value: float | None
    baseline_value: float | None
    dm: DMResult | None
    verdict: str
    reason: str | None = None

    @property
    def relative(self) -> float | None:
        """value / baseline_value - 1 (negative: the model's loss is lower)."""
        if self.value is None or not self.baseline_value:
            return None
        return self.value / self.baseline_value - 1.0


@dataclass(frozen=True)
class WorstUnits:
    """The units with the largest error of one judged model, named, with the baseline's."""

    model: str
    unit: npt.NDArray[np.int64]
    label: list[str]
    msle: Floats
    baseline_msle: Floats  # NaN where the baseline has no scored row of the unit


@dataclass(frozen=True)
class LevelSection:
    level: str
    snapshot: Mapping[str, Any]
    partition: Mapping[str, Any]
    rows: list[ModelRow]  # sorted by pooled MSLE
    metrics: list[str]  # metric columns present, in display order
    curves: dict[str, tuple[list[Line], list[Line]]]  # metric -> (by step, by target month)
    calibration: list[Line]
    error_maps: list[CellErrors]
    missing_predictions: list[str]  # models drawn without calibration / map
    verdicts: list[VerdictRow] = field(default_factory=list)
    worst: list[WorstUnits] = field(default_factory=list)
    all_judged: bool = False  # no model of the level is deployed: every model was judged
    names: UnitNames | None = None


@dataclass(frozen=True)
class ReportData:
    record: Mapping[str, Any]
    sections: list[LevelSection]

def _metric_base(label: str) -> str:
    return label.split("(", 1)[0]

_COVERAGE_ALPHA = {"coverage": 0.05, "coverage_50": 0.5, "coverage_90": 0.1,
                   "pit_coverage_50": 0.5, "pit_coverage_90": 0.1}


def _coverage_target(label: str) -> float:
    found = re.search(r"alpha=([0-9.eE+-]+)", label)
    return 1.0 - (float(found.group(1)) if found else _COVERAGE_ALPHA[_metric_base(label)])


def _value(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _row(model: ModelInput) -> ModelRow:
    m, info = model.metrics, model.info
    n_scored, n_unscored = int(m.get("n_scored", 0)), int(m.get("n_unscored", 0))
    return ModelRow(
        name=model.name,
        status=model.status,
        n_samples=int(info.get("n_samples", 1)),
        target=str(info.get("target", "")),
        rows=int(info.get("rows", n_scored + n_unscored)),
        n_scored=n_scored,
        n_unscored=n_unscored,
        unscored_months=tuple(int(x) for x in m.get("unscored_months", ())),
        pooled={k: _value(v) for k, v in m.get("pooled", {}).items()},
        means={s: {k: _value(v) for k, v in d.items()} for s, d in m.get("means", {}).items()},
        notes=tuple(m.get("notes", ())),
    )


def _sort_key(row: ModelRow) -> tuple[bool, float, str]:
    msle = row.pooled.get("msle")
    return (msle is None, msle if msle is not None else 0.0, row.name)


def _series(metrics: Mapping[str, Any], scheme: str, label: str) -> tuple[Floats, Floats]:
    groups = [g for g in metrics.get("groups", {}).get(scheme, []) if g["metric"] == label]
    x = np.array([g["group"] for g in groups], dtype=np.float64)
    y = np.array([np.nan if g["value"] is None else g["value"] for g in groups],
                 dtype=np.float64)
    order = np.argsort(x, kind="stable")
    return x[order], y[order]

def _kind(model: ModelInput) -> str:
    return str(model.info.get("kind", "model"))


def _judged(models: Sequence[ModelInput]) -> tuple[list[ModelInput], bool]:
    """The models the verdict judges: the deployed ones, or every non-baseline model when
    none of the level is deployed (then ``True``)."""
    deployed = [m for m in models if m.status == "deployed"]
    if deployed:
        return deployed, False
    return [m for m in models if m.status != "baseline"], True


Emphasis = dict[str, tuple[str, bool]]  # model -> (legend note, drawn on top)


def _emphasis(models: Sequence[ModelInput]) -> Emphasis:
    """Deployed models are named so in the legends; the deployed ensembles (or, without one,
    the deployed models) are drawn on top: they are what the level publishes."""
    deployed = [m for m in models if m.status == "deployed"]
    ensembles = {m.name for m in deployed if _kind(m) == "ensemble"}
    top = ensembles or {m.name for m in deployed}
    return {m.name: ("deployed ensemble" if m.name in ensembles else "deployed", m.name in top)
            for m in deployed}


def _line(model: ModelInput, name: str, x: Floats, y: Floats, emphasis: Emphasis) -> Line:
    note, on_top = emphasis.get(model.name, ("", False))
    return Line(name, x, y, model.status == "baseline", note, on_top)


def _curves(models: Sequence[ModelInput], labels: Sequence[str], emphasis: Emphasis) -> dict[
        str, tuple[list[Line], list[Line]]]:
    """Per plotted metric, one line per model by step and by month; for CRPS a point
    forecast's MAE stands in (the CRPS of a point forecast is its MAE, DOMAIN.md 5)."""
    out: dict[str, tuple[list[Line], list[Line]]] = {}
    for metric in PLOTTED_METRICS:
        if metric not in labels:
            continue
        by_step: list[Line] = []
        by_month: list[Line] = []
        for model in models:
            present = metric in model.metrics.get("metrics", ())
            label, name = metric, model.name
            if not present and metric == "crps" and "mae" in model.metrics.get("metrics", ()):
                label, name = "mae", f"{model.name} (point: MAE)"
            elif not present:
                continue
            by_step.append(_line(model, name, *_series(model.metrics, "step", label), emphasis))
            by_month.append(_line(model, name, *_series(model.metrics, "month", label),
                                  emphasis))
        if by_step:
            out[metric] = (by_step, by_month)
    return out


def _scored(model: ModelInput) -> Scored | None:
    if model.forecast is None or model.actuals is None:
        return None
    fc = model.forecast if isinstance(model.forecast, Forecast) else model.forecast()
    actuals = model.actuals
    if len(fc) == 0:
        return None
    point = np.asarray(fc.point, dtype=np.float64)
    slim = Forecast(frame=fc.frame, point=point, samples=point[:, None],
                    unit_column=fc.unit_column)
    scored = join_actuals(slim, actuals)
    return scored if len(scored) else None


def calibration_bins(point: Floats, actual: Floats) -> tuple[Floats, Floats, npt.NDArray[
        np.int64]]:
    """Mean predicted, mean observed and row count per bin of predicted value (log1p-spaced
    edges, the first bin holding the zeros); bins with fewer than MIN_BIN_ROWS rows dropped."""
    idx = np.clip(np.searchsorted(CALIBRATION_EDGES, point, side="right") - 1, 0,
                  len(CALIBRATION_EDGES) - 1)
    n = np.bincount(idx, minlength=len(CALIBRATION_EDGES))
    keep = n >= MIN_BIN_ROWS
    safe = np.maximum(n, 1)
    pred = np.bincount(idx, weights=point, minlength=len(n)) / safe
    obs = np.bincount(idx, weights=actual, minlength=len(n)) / safe
    return pred[keep], obs[keep], n[keep]

def cell_msle(scored: Scored, model: str) -> CellErrors:
    gid, inverse = np.unique(scored.unit, return_inverse=True)
    err = (np.log1p(scored.actual) - np.log1p(np.maximum(scored.point, 0.0))) ** 2
    total = np.bincount(inverse, weights=err, minlength=len(gid))
    count = np.bincount(inverse, minlength=len(gid))
    return CellErrors(model=model, gid=gid.astype(np.int64), msle=total / count)


def _judge(model: ModelInput, scored: Scored | None, base: ModelRow | None,
           base_scored: Scored | None) -> VerdictRow:
    """``model`` against the best baseline: the headline metric on their common rows and
    the Diebold-Mariano test of ``compare_forecasts`` (A = baseline, B = model)."""
    own = _row(model).pooled.get(HEADLINE)
    fields: dict[str, Any] = {"model": model.name, "kind": _kind(model),
                              "status": model.status, "metric": HEADLINE}
    if base is None:
        return VerdictRow(**fields, baseline=None, value=own, baseline_value=None, dm=None,
                          verdict="not tested", reason=f"no baseline of this level has a "
                          f"pooled {METRIC_TITLES[HEADLINE]}")
    if scored is None or base_scored is None:
        return VerdictRow(**fields, baseline=base.name, value=own,
                          baseline_value=base.pooled.get(HEADLINE), dm=None,
                          verdict="not tested", reason="predictions or actuals not available")
    try:
        cmp = compare_forecasts(base_scored, scored, metric=HEADLINE)
    except InputError as exc:  # e.g. no row in common: say so in the verdict, do not fail
        return VerdictRow(**fields, baseline=base.name, value=own,
                          baseline_value=base.pooled.get(HEADLINE), dm=None,
                          verdict="not tested", reason=str(exc))
    pooled = cmp.values["pooled"]
    verdict = WORDS[cmp.dm.verdict] if cmp.dm is not None else "not tested"
    return VerdictRow(**fields, baseline=base.name, value=pooled.b, baseline_value=pooled.a,
                      dm=cmp.dm, verdict=verdict, reason=cmp.dm_reason)


def _worst(errors: CellErrors, base: CellErrors | None, names: UnitNames) -> WorstUnits:
    order = np.argsort(-errors.msle, kind="stable")[:WORST_UNITS]
    units = errors.gid[order]
    base_msle = np.full(len(units), np.nan)
    if base is not None:
        pos = np.searchsorted(base.gid, units)
        hit = (pos < len(base.gid)) & (base.gid[np.minimum(pos, len(base.gid) - 1)] == units)
        base_msle[hit] = base.msle[pos[hit]]
    return WorstUnits(model=errors.model, unit=units, label=[names.label(u) for u in units],
                      msle=errors.msle[order], baseline_msle=base_msle)


def _section(level: str, models: Sequence[ModelInput], inputs: ReportInputs) -> LevelSection:
    rows = sorted((_row(m) for m in models), key=_sort_key)
    order = {r.name: i for i, r in enumerate(rows)}
    ordered = sorted(models, key=lambda m: order[m.name])
    present = {label for m in models for label in m.metrics.get("metrics", ())}
    labels = [x for x in METRIC_ORDER if x in present] + sorted(present - set(METRIC_ORDER))
    emphasis = _emphasis(ordered)
    names = inputs.names.get(level) or UnitNames(level)
    judged_models, all_judged = _judged(ordered)
    judged = {m.name for m in judged_models}
    base = next((r for r in rows if r.baseline and r.pooled.get(HEADLINE) is not None), None)
    base_model = next((m for m in ordered if base is not None and m.name == base.name), None)
    base_scored = _scored(base_model) if base_model is not None else None  # kept: A of each DM
    base_errors = cell_msle(base_scored, base_model.name) if (
        base_scored is not None and base_model is not None) else None
    calibration: list[Line] = []
    maps: list[CellErrors] = []
    missing: list[str] = []
    verdicts: list[VerdictRow] = []
    worst: list[WorstUnits] = []
    for model in ordered:
        scored = base_scored if model is base_model else _scored(model)
        if model.name in judged:
            verdicts.append(_judge(model, scored, base, base_scored))
        if scored is None:
            missing.append(model.name)
            continue
        pred, obs, _ = calibration_bins(scored.point, scored.actual)
        calibration.append(_line(model, model.name, pred, obs, emphasis))
        errors = base_errors if model is base_model else None
        if errors is None and (level == "pgm" or model.name in judged):
            errors = cell_msle(scored, model.name)
        if level == "pgm" and errors is not None:
            maps.append(errors)
        if model.name in judged and errors is not None:
            worst.append(_worst(errors, base_errors, names))
    record = inputs.record
    snapshot = dict(record.get("snapshots", {}).get(level, {}))
    snapshot.update(inputs.snapshots.get(level, {}))
    return LevelSection(
        level=level,
        snapshot=snapshot,
        partition=record.get("partition", {}).get(level, {}),
        rows=rows,
        metrics=labels,
        curves=_curves(ordered, labels, emphasis),
        calibration=calibration,
        error_maps=maps,
        missing_predictions=missing,
        verdicts=verdicts,
        worst=worst,
        all_judged=all_judged,
        names=names,
    )


def build_report(inputs: ReportInputs) -> ReportData:
    """Everything the page shows, computed from plain inputs; levels in the order cm, pgm."""
    levels = sorted({m.level for m in inputs.models}, key=lambda lv: (lv != "cm", lv))
    sections = [_section(lv, [m for m in inputs.models if m.level == lv], inputs)
                for lv in levels]
    return ReportData(record=inputs.record, sections=sections)


# --------------------------------------------------------------------------- rendering

PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { border-bottom: 2px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name, td.text { text-align: left; }
tr.baseline td { color: #555; font-style: italic; background: #fafafa; }
td.best { font-weight: bold; background: #d9f2d9; }
.badge { font-size: .75em; border: 1px solid #888; border-radius: 3px; padding: 0 .3em;
         color: #555; font-style: normal; }
.warn { color: #a40000; font-weight: bold; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .15em 1em; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0; font-family: monospace; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #555; }
.note { font-size: .9em; color: #444; }
td.better { background: #d9f2d9; font-weight: bold; } td.worse { background: #f8d7d7;
  font-weight: bold; } span.reason { font-size: .85em; color: #555; }
</style>
</head>
<body>
<h1>$title</h1>
$verdict
$header
$sections
<p class="note">Rendered by ewspipe $version from the files of this run folder; self-contained
(no network access needed). Figures are also saved as PNG files next to this page.</p>
</body>
</html>
""")

Image = tuple[str, str, bytes]  # file name, caption, PNG bytes


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None) -> str:
    if value is None:
        return "&ndash;"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.3f}"
    return f"{value:.4f}"


def _month(mid: Any) -> str:
    try:
        return f"{int(mid)} ({month_label(int(mid))})"
    except (TypeError, ValueError):
        return str(mid)


def _dl(items: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="meta">{body}</dl>'


def _stat(value: float) -> str:
    return f"{value:+.3f}" if math.isfinite(value) else ("+inf" if value > 0 else "-inf")


def _p(value: float) -> str:
    return "&lt; 0.0001" if value < 1e-4 else f"{value:.4f}"


def _change(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:+.1%}"


def _verdict_row(level: str, v: VerdictRow) -> str:
    reason = f'<br><span class="reason">{_e(v.reason)}</span>' if v.reason and v.dm is None \
        else ""
    cls = {"better": "better", "worse": "worse"}.get(v.verdict, "text")
    dm = v.dm
    return (f'<tr><td class="text">{_e(level)}</td><td class="name">{_e(v.model)}</td>'
            f'<td class="text">{_e(v.kind)}, {_e(v.status)}</td><td>{_num(v.value)}</td>'
            f'<td class="name">{_e(v.baseline or "none")}</td><td>{_num(v.baseline_value)}</td>'
            f"<td>{_change(v.relative)}</td>"
            f"<td>{_stat(dm.statistic) if dm else '&ndash;'}</td>"
            f"<td>{_p(dm.p_value) if dm else '&ndash;'}</td>"
            f"<td>{dm.n_periods if dm else '&ndash;'}</td>"
            f'<td class="{cls}">{_e(v.verdict)}{reason}</td></tr>')


def _verdict_table(data: ReportData) -> str:
    """The page's first table: is what the run deploys better than doing nothing clever?"""
    title = METRIC_TITLES[HEADLINE]
    rows = [_verdict_row(s.level, v) for s in data.sections for v in s.verdicts]
    head = '<h2 id="verdict">Verdict</h2>'
    if not rows:
        return head + '<p class="note">No model to judge: the run scored baselines only.</p>'
    everyone = [s.level for s in data.sections if s.all_judged and s.verdicts]
    extra = (f" No model of level {', '.join(everyone)} is deployed in this run: every model "
             "of that level is judged." if everyone else "")
    return (head + f'<p class="note">Each deployed model and ensemble against the best '
            f"baseline of its level (lowest pooled {title}), on the rows both predict. "
            f"Diebold-Mariano test of equal {title}: per-row squared log errors, model minus "
            "baseline, averaged per target month; Newey-West variance, Harvey-Leybourne-"
            "Newbold correction, t test, two-sided at 5%. A negative statistic and change "
            f"mean the model's loss is lower.{_e(extra)}</p>"
            '<table><thead><tr><th class="text">level</th><th class="name">model</th>'
            f'<th class="text">kind, status</th><th>{_e(title)}</th>'
            f'<th class="name">best baseline</th><th>baseline {_e(title)}</th><th>change</th>'
            "<th>DM statistic</th><th>p-value</th><th>months</th>"
            '<th class="text">verdict</th></tr></thead><tbody>' + "".join(rows)
            + "</tbody></table>")


def _worst_tables(section: LevelSection) -> str:
    if not section.worst:
        return ""
    base = next((v.baseline for v in section.verdicts if v.baseline), None)
    unit = "country" if section.level == "cm" else "cell"
    parts = [f"<h3>Largest errors by {unit}</h3>",
             f'<p class="note">The {WORST_UNITS} units with the highest MSLE over the run, for '
             "each judged model, with the best baseline's MSLE on the same unit.</p>"]
    for w in section.worst:
        body = "".join(
            f"<tr><td>{int(u)}</td><td class=\"name\">{_e(label)}</td><td>{_num(m)}</td>"
            f"<td>{_num(None if math.isnan(b) else float(b))}</td></tr>"
            for u, label, m, b in zip(w.unit, w.label, w.msle.tolist(),
                                      w.baseline_msle.tolist(), strict=True))
        parts.append(f"<h4>{_e(w.model)}</h4><table><thead><tr><th>id</th>"
                     f'<th class="name">{unit}</th><th>MSLE</th>'
                     f"<th>{_e(base or 'baseline')} MSLE</th></tr></thead><tbody>{body}"
                     "</tbody></table>")
    return "".join(parts)


def _header(data: ReportData) -> str:
    rec = data.record
    code = rec.get("code", {})
    dirty = code.get("dirty")
    dirty_text = ('<span class="warn">yes: uncommitted changes, the numbers may not be '
                  "reproducible from the commit</span>" if dirty else _e("no"))
    return "<h2>Run</h2>" + _dl([
        ("run id", _e(rec.get("run_id", "?"))),
        ("kind", _e(rec.get("kind", "?"))),
        ("run type", _e(rec.get("run_type", "?"))),
        ("started at (UTC)", _e(rec.get("started_at", "?"))),
        ("duration", _e(f"{rec.get('seconds', '?')} s")),
        ("code commit", _e(code.get("commit", "unknown"))),
        ("code dirty", dirty_text),
        ("release tag", _e(code.get("tag") or "none")),
        ("ewspipe version", _e(code.get("package", "?"))),
        ("levels", _e(", ".join(s.level for s in data.sections))),
    ])


def _snapshot_block(section: LevelSection) -> str:
    snap, part = section.snapshot, section.partition
    items = [("snapshot id", _e(snap.get("id", "?"))),
             ("snapshot sha256", _e(snap.get("sha256", "?"))),
             ("fetched at", _e(snap.get("fetched_at", "?")))]
    if "imported_at" in snap:
        items.append(("imported at", _e(snap["imported_at"])))
    if "first_month" in snap:
        items.append(("data months", _e(f"{_month(snap['first_month'])} .. "
                                        f"{_month(snap.get('last_month'))}")))
        items.append(("rows / units", _e(f"{snap.get('rows', '?'):,} / {snap.get('units', '?')}")))
    if snap.get("source"):
        source = ", ".join(f"{k}={v}" for k, v in sorted(snap["source"].items()))
        items.append(("source", _e(source)))
    if part:
        train, test, origins = part.get("train", []), part.get("test", []), part.get(
            "origins", [])
        if len(train) == 2:
            items.append(("train months", _e(f"{_month(train[0])} .. {_month(train[1])}")))
        if len(test) == 2:
            items.append(("test months", _e(f"{_month(test[0])} .. {_month(test[1])}")))
        if origins:
            steps = part.get("steps", "?")
            items.append(("rolling origins", _e(f"{len(origins)}: {_month(origins[0])} .. "
                                                f"{_month(origins[-1])}, steps 1..{steps}")))
    return _dl(items)


def _best(values: Sequence[float | None], label: str) -> set[int]:
    base = _metric_base(label)
    key: Callable[[float], float]
    if base in LOWER_IS_BETTER:
        key = lambda v: v  # noqa: E731
    elif base in HIGHER_IS_BETTER:
        key = lambda v: -v  # noqa: E731
    elif base == "mcr":  # a ratio: 0.5 and 2 are equally far from 1
        key = lambda v: abs(math.log(v)) if v > 0 else math.inf  # noqa: E731
    elif base in _COVERAGE_ALPHA:
        target = _coverage_target(label)
        key = lambda v: abs(v - target)  # noqa: E731
    else:
        return set()
    scored = [(key(v), i) for i, v in enumerate(values) if v is not None]
    if len(scored) < 2:
        return set()
    top = min(s for s, _ in scored)
    return {i for s, i in scored if math.isclose(s, top, rel_tol=1e-12, abs_tol=1e-15)}


_BEST = ' class="best"'


def _metric_table(section: LevelSection, view: str, values: list[Mapping[str, float | None]]
                  ) -> str:
    labels = section.metrics
    best = {label: _best([v.get(label) for v in values], label) for label in labels}
    head = "".join(f"<th>{_e(METRIC_TITLES.get(x, x))}</th>" for x in labels)
    body = []
    for i, (row, vals) in enumerate(zip(section.rows, values, strict=True)):
        badge = ' <span class="badge">baseline</span>' if row.baseline else ""
        kind = "point" if row.n_samples <= 1 else f"{row.n_samples} samples"
        cells = "".join(
            f"<td{_BEST if i in best[x] else ''}>{_num(vals.get(x))}</td>" for x in labels)
        body.append(f'<tr class="{"baseline" if row.baseline else "model"}">'
                    f'<td class="name">{_e(row.name)}{badge}</td><td class="text">'
                    f"{_e(row.status)}</td><td class=\"text\">{_e(kind)}</td>{cells}</tr>")
    return (f"<h4>{_e(view)}</h4><table><thead><tr><th class=\"name\">model</th>"
            f"<th>status</th><th>forecast</th>{head}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _verdict(section: LevelSection) -> str:
    """Which models beat the best baseline on pooled MSLE (DOMAIN.md 3: a pipeline that
    cannot beat the baselines is not working)."""
    scored = [r for r in section.rows if r.pooled.get("msle") is not None]
    bases = [r for r in scored if r.baseline]
    models = [r for r in scored if not r.baseline]
    if not bases or not models:
        return ""
    best = bases[0]  # rows are sorted by pooled MSLE
    limit = best.pooled["msle"] or 0.0
    losers = [r.name for r in models if (r.pooled["msle"] or 0.0) >= limit]
    text = (f"Best baseline on pooled MSLE: {best.name} ({_num(best.pooled['msle'])}). "
            f"{len(models) - len(losers)} of {len(models)} models beat it")
    warn = f"; not beaten by: {', '.join(losers)}" if losers else ""
    cls = "warn" if losers else "note"
    return f'<p class="{cls}">{_e(text + warn)}.</p>'


def _tables(section: LevelSection) -> str:
    parts = [
        "<h3>Models against the baselines</h3>",
        _verdict(section),
        '<p class="note">Sorted by pooled MSLE. Best value per column in bold green; lower is '
        "better except Pearson r, AP and ROC AUC (higher), MCR (closest to 1) and coverage "
        "(closest to 1 - alpha); y_hat_bar (mean prediction) is not ranked. A dash: the metric "
        "does not apply (sample metrics need a sample forecast) or is undefined (see notes).</p>",
        _metric_table(section, "pooled over all scored rows", [r.pooled for r in section.rows]),
    ]
    for scheme, view in SCHEME_VIEWS:
        parts.append(_metric_table(section, view, [r.means.get(scheme, {})
                                                   for r in section.rows]))
    return "".join(parts)


def _span(months: Sequence[int]) -> str:
    return f"{_month(months[0])} .. {_month(months[-1])}" if months else "unknown"


def _unscored(section: LevelSection) -> str:
    rows = []
    for r in section.rows:
        where = (_e(f"{_span(r.unscored_months)} ({len(r.unscored_months)} months)")
                 if r.unscored_months else "&ndash;")
        cls = ' class="warn"' if r.n_unscored else ""
        rows.append(f'<tr><td class="name">{_e(r.name)}</td><td>{_e(r.target)}</td>'
                    f"<td>{r.rows:,}</td><td>{r.n_scored:,}</td><td{cls}>{r.n_unscored:,}</td>"
                    f'<td class="text">{where}</td></tr>')
    hit = [r for r in section.rows if r.n_unscored]
    verdict = ("Every predicted row had an actual: nothing was left unscored." if not hit else
               f"{len(hit)} of {len(section.rows)} models have predicted rows without actuals "
               f"(up to {max(r.n_unscored for r in hit):,} rows per model, target months "
               f"{_span(sorted({m for r in hit for m in r.unscored_months}))}): the data end "
               "before the test window does. Those rows are counted here and not scored.")
    return ("<h3>Scored and unscored rows</h3>"
            f'<p class="note">{_e(verdict)}</p><table><thead><tr><th class="name">model</th>'
            "<th>target</th><th>predicted rows</th><th>scored</th><th>unscored</th>"
            "<th>unscored target months</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def _notes(section: LevelSection) -> str:
    items = [f"<li><b>{_e(r.name)}</b><ul>" + "".join(f"<li>{_e(n)}</li>" for n in r.notes)
             + "</ul></li>" for r in section.rows if r.notes]
    if not items:
        return ""
    return ("<details><summary>Undefined metric values (notes)</summary><ul>"
            + "".join(items) + "</ul></details>")


def _figure_html(image: Image) -> str:
    name, caption, png = image
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="{uri}" alt="{_e(caption)}"><figcaption>{_e(caption)} '
            f"(file: {_e(REPORT_DIR + '/' + name)})</figcaption></figure>")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _images(section: LevelSection) -> list[Image]:
    lv = section.level
    images: list[Image] = []
    part = section.partition
    steps = int(part.get("steps", 36))
    origins = part.get("origins") or []
    months = (int(origins[0]) + 1, int(origins[-1]) + steps) if origins else None
    unscored = sorted({m for r in section.rows for m in r.unscored_months})
    for metric, (by_step, by_month) in section.curves.items():
        title = METRIC_TITLES.get(metric, metric)
        caption = (f"{lv}: {title} by step (1..36, pooled over origins and units) and by "
                   "target month, log y axis; baselines dashed grey, the deployed ensemble "
                   "(or deployed models) thick and on top")
        if metric == "crps":
            caption += "; point forecasts drawn with their MAE, the CRPS of a point forecast"
        images.append((f"{lv}_{_safe(metric)}.png", caption, plots.metric_figure(
            f"{lv} {title}", title, by_step, by_month, steps=steps, months=months,
            unscored=unscored)))
    if section.calibration:
        images.append((f"{lv}_calibration.png",
                       f"{lv}: calibration, mean observed against mean predicted count in bins "
                       f"of predicted value (bins with at least {MIN_BIN_ROWS} rows)",
                       plots.calibration_figure(f"{lv} calibration", section.calibration)))
    vmax = max((float(np.nanmax(m.msle)) for m in section.error_maps if len(m.msle)),
               default=None)
    names = section.names or UnitNames(lv)
    for cells in section.error_maps:
        top = np.argsort(-cells.msle, kind="stable")[:3]
        hot = "; ".join(names.label(int(g)) for g in cells.gid[top])
        images.append((f"{lv}_map_{_safe(cells.model)}.png",
                       f"{lv}: mean squared log error per PRIO-GRID cell over the run, "
                       f"{cells.model} (same colour scale for every model of this level); "
                       f"largest: {hot}",
                       plots.error_map_figure(f"{cells.model}: MSLE per cell", cells.gid,
                                              cells.msle, vmax=vmax)))
    return images


def _section_html(section: LevelSection, images: Sequence[Image]) -> str:
    parts = [f"<h2>Level {_e(section.level)}</h2>", "<h3>Data and partition</h3>",
             _snapshot_block(section), _tables(section), _worst_tables(section),
             _unscored(section), _notes(section), "<h3>Figures</h3>"]
    parts.extend(_figure_html(img) for img in images)
    if section.missing_predictions:
        parts.append('<p class="note">No calibration or map for '
                     f"{_e(', '.join(section.missing_predictions))}: predictions or actuals "
                     "were not available.</p>")
    return "\n".join(parts)


def render_report(data: ReportData, directory: Path) -> Path:
    """Write the figures as PNG files and the page into ``directory``; returns the page."""
    directory.mkdir(parents=True, exist_ok=True)
    html_sections = []
    for section in data.sections:
        images = _images(section)
        for name, _, png in images:
            (directory / name).write_bytes(png)
        html_sections.append(_section_html(section, images))
    title = f"Evaluation report: run {data.record.get('run_id', '?')}"
    page = PAGE.substitute(title=_e(title), verdict=_verdict_table(data), header=_header(data),
                           sections="\n".join(html_sections), version=_e(__version__))
    path = directory / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path


def report_files(directory: Path) -> list[Path]:
    """The files of a rendered report folder (the page and its figures: html, png, svg),
    sorted by name; e.g. to log them as run artifacts."""
    return sorted(p for p in Path(directory).iterdir()
                  if p.is_file() and p.suffix.lower() in REPORT_SUFFIXES)


def publish_report(inputs: ReportInputs, run_dir: Path) -> Path:
    """Build and render into a temporary folder of ``run_dir``, then swap it in as
    ``report/``; on any failure the previous report (if any) stays and nothing is left behind.
    Returns the page's path."""
    data = build_report(inputs)
    final = run_dir / REPORT_DIR
    with atomic_dir(final, replace=True) as tmp:
        render_report(data, tmp)
    return final / REPORT_FILE
