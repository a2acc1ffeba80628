"""The evaluation report from plain inputs: gathered data, figures, page, atomic publishing."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from ewspipe.evaluation import plots
from ewspipe.evaluation.compare import compare_forecasts
from ewspipe.evaluation.plots import Line
from ewspipe.evaluation.report import (
    REPORT_DIR,
    REPORT_FILE,
    ModelInput,
    ReportData,
    ReportInputs,
    build_report,
    calibration_bins,
    cell_msle,
    publish_report,
    render_report,
    report_files,
)
from ewspipe.evaluation.schemes import evaluate, join_actuals
from ewspipe.geography import UnitNames
from ewspipe.models.forecast import Forecast
from ewspipe.panel.priogrid import gid_from_rowcol

POINT = ("mse", "msle", "rmsle", "mae", "pearson", "mcr", "y_hat_bar")
SAMPLE = ("crps", "mis", "coverage", "brier")
ORIGINS = (444, 445, 446)
STEPS = 36
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _actuals(units: np.ndarray, unit_column: str, last_month: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    months = np.arange(400, last_month + 1)
    mm, uu = np.meshgrid(months, units, indexing="ij")
    values = rng.poisson(2.0, size=mm.size) * (rng.random(mm.size) < 0.4)
    return pd.DataFrame({"month_id": mm.ravel(), unit_column: uu.ravel(),
                         "value": values.astype(np.int64)})


def _forecast(units: np.ndarray, unit_column: str, scale: float, samples: int = 1) -> Forecast:
    rows = [(o, s, o + s, u) for o in ORIGINS for s in range(1, STEPS + 1) for u in units]
    frame = pd.DataFrame(rows, columns=["origin", "step", "month_id", unit_column])
    rng = np.random.default_rng(int(scale * 100))
    point = scale * (1.0 + rng.random(len(frame)))
    draws = rng.poisson(point[:, None], size=(len(frame), samples)).astype(np.float64) \
        if samples > 1 else point[:, None]
    if samples > 1:
        point = draws.mean(axis=1)
    return Forecast(frame=frame, point=point, samples=draws, unit_column=unit_column)


def _model(name: str, level: str, status: str, scale: float, actuals: pd.DataFrame,
           units: np.ndarray, samples: int = 1, kind: str = "model") -> ModelInput:
    unit_column = "country_id" if level == "cm" else "priogrid_gid"
    fc = _forecast(units, unit_column, scale, samples)
    metrics = POINT + (SAMPLE if samples > 1 else ())
    ev = evaluate(join_actuals(fc, actuals), metrics).to_dict()
    info = {"n_samples": samples, "rows": len(fc), "target": "ged_sb", "kind": kind}
    return ModelInput(name=name, level=level, status=status, metrics=ev, info=info,
                      forecast=fc, actuals=actuals)


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    countries = np.arange(1, 9)
    cells = gid_from_rowcol(np.repeat(np.arange(200, 204), 3), np.tile(np.arange(400, 403), 4))
    cm_act = _actuals(countries, "country_id", last_month=480)  # months 481.. unscored
    pgm_act = _actuals(cells, "priogrid_gid", last_month=492)
    models = [
        _model("zero_ish", "cm", "baseline", 0.01, cm_act, countries),
        _model("all_zero", "cm", "baseline", 0.0, cm_act, countries),
        _model("good_tree", "cm", "deployed", 0.8, cm_act, countries),
        _model("calm_chorus", "cm", "deployed", 0.5, cm_act, countries, kind="ensemble"),
        _model("wide_cloud", "cm", "shadow", 1.0, cm_act, countries, samples=20),
        _model("grid_base", "pgm", "baseline", 0.05, pgm_act, cells),
        _model("grid_tree", "pgm", "deployed", 0.9, pgm_act, cells),
    ]
    part = {"train": [121, 444], "test": [445, 492], "origins": list(ORIGINS), "steps": STEPS}
    record = {
        "run_id": "20260101_000000_evaluate_calibration_<b>x</b>", "kind": "evaluate",
        "run_type": "calibration", "started_at": "2026-01-01T00:00:00Z", "seconds": 1.0,
        "snapshots": {"cm": {"id": "cm-abc", "sha256": "a" * 64, "fetched_at": "F1"},
                      "pgm": {"id": "pgm-def", "sha256": "b" * 64, "fetched_at": "F2"}},
        "code": {"commit": "c0ffee", "dirty": True, "tag": None, "package": "0.1.0"},
        "partition": {"cm": part, "pgm": part},
    }
    manifests = {"cm": {"id": "cm-abc", "sha256": "a" * 64, "fetched_at": "F1",
                        "source": {"url": "https://example.org/data.csv"}}}
    names = {"cm": UnitNames("cm", name={c: f"Land {c}" for c in countries},
                             iso={c: f"L{c:02d}" for c in countries}),
             "pgm": UnitNames("pgm", name={1: "Land 1"}, iso={1: "L01"},
                              country={int(g): 1 for g in cells})}
    return ReportInputs(record=record, models=models, snapshots=manifests, names=names)


@pytest.fixture(scope="module")
def data(inputs) -> ReportData:
    return build_report(inputs)


def test_build_groups_by_level_and_sorts_by_msle(data):
    assert [s.level for s in data.sections] == ["cm", "pgm"]
    cm, pgm = data.sections
    msle = [r.pooled["msle"] for r in cm.rows]
    assert msle == sorted(msle)
    assert {r.name for r in cm.rows if r.baseline} == {"zero_ish", "all_zero"}
    assert "crps" in cm.metrics and "crps" not in pgm.metrics
    assert set(cm.curves) == {"msle", "mse", "crps"} and set(pgm.curves) == {"msle", "mse"}
    by_step, by_month = cm.curves["msle"]
    assert all(ln.x.tolist() == list(range(1, 37)) for ln in by_step)
    crps_names = {ln.label for ln in cm.curves["crps"][0]}
    assert "wide_cloud" in crps_names and "good_tree (point: MAE)" in crps_names
    assert [ln.baseline for ln in by_month] == [r.baseline for r in cm.rows]
    assert cm.error_maps == [] and {m.model for m in pgm.error_maps} == {"grid_base",
                                                                         "grid_tree"}
    assert cm.rows[0].n_unscored > 0 and cm.rows[0].unscored_months[0] == 481
    assert cm.snapshot["source"] == {"url": "https://example.org/data.csv"}


def test_calibration_bins_and_cell_msle():
    point = np.array([0.0] * 10 + [5.0] * 10 + [100.0] * 3)
    actual = np.array([1.0] * 10 + [3.0] * 10 + [50.0] * 3)
    pred, obs, n = calibration_bins(point, actual)
    assert n.tolist() == [10, 10]  # the 3-row bin is dropped
    np.testing.assert_allclose(pred, [0.0, 5.0])
    np.testing.assert_allclose(obs, [1.0, 3.0])

    fc = Forecast(frame=pd.DataFrame({"origin": [1, 1, 1], "step": [1, 1, 2],
                                      "month_id": [2, 2, 3], "priogrid_gid": [5, 9, 5]}),
                  point=np.array([0.0, 1.0, 3.0]), samples=np.array([[0.0], [1.0], [3.0]]),
                  unit_column="priogrid_gid")
    act = pd.DataFrame({"month_id": [2, 2, 3], "priogrid_gid": [5, 9, 5],
                        "value": [0, 1, 0]})
    cells = cell_msle(join_actuals(fc, act), "m")
    assert cells.gid.tolist() == [5, 9]
    np.testing.assert_allclose(cells.msle, [np.log1p(3.0) ** 2 / 2, 0.0])


def _external_refs(page: str) -> list[str]:
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page, flags=re.I)
    return [r for r in refs if not r.startswith("data:")]


@pytest.fixture(scope="module")
def page(data, tmp_path_factory) -> Path:
    return render_report(data, tmp_path_factory.mktemp("report") / "a")


def test_render_is_offline_escaped_and_deterministic(inputs, page, tmp_path):
    page_b = render_report(build_report(inputs), tmp_path / "b")
    html = page.read_text()
    assert _external_refs(html) == []
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    for model in inputs.models:
        assert model.name in html
    for text in ("cm-abc", "a" * 64, "pgm-def", "c0ffee", "uncommitted"):
        assert text in html
    pngs = sorted(p.name for p in page.parent.glob("*.png"))
    assert {"cm_msle.png", "cm_mse.png", "cm_crps.png", "cm_calibration.png",
            "pgm_msle.png", "pgm_mse.png", "pgm_calibration.png", "pgm_map_grid_base.png",
            "pgm_map_grid_tree.png"} == set(pngs)
    assert html.count('src="data:image/png;base64,') == len(pngs)
    for name in pngs:
        png = (page.parent / name).read_bytes()
        assert png.startswith(PNG_MAGIC) and b"Software" not in png
        assert png == (tmp_path / "b" / name).read_bytes(), f"{name} is not deterministic"
    assert html == page_b.read_text()
    assert "predicted rows without actuals" in html


def test_best_value_highlighting(page):
    html = page.read_text()
    cm_pooled = html.split("<h4>pooled over all scored rows</h4>")[1].split("</table>")[0]
    rows = re.findall(r"<tr class=\"(\w+)\">(.*?)</tr>", cm_pooled)
    assert rows[0][0] in {"model", "baseline"}
    first_msle = re.findall(r"<td( class=\"best\")?>", rows[0][1])[0]
    assert first_msle == ' class="best"'  # sorted by MSLE: the first row holds the best MSLE
    assert [kind for kind, _ in rows].count("baseline") == 2


def test_publish_is_atomic_and_replaces(inputs, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    page = publish_report(inputs, run_dir)
    assert page == run_dir / REPORT_DIR / REPORT_FILE and page.is_file()
    before = page.read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(plots, "error_map_figure", boom)
    with pytest.raises(RuntimeError, match="drawing failed"):
        publish_report(inputs, run_dir)
    assert page.read_text() == before, "a failed re-render must keep the previous report"
    assert sorted(p.name for p in run_dir.iterdir()) == [REPORT_DIR]

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with pytest.raises(RuntimeError):
        publish_report(inputs, fresh)
    assert list(fresh.iterdir()) == [], "a failed first render must leave nothing"


def test_model_without_predictions_is_named(inputs, tmp_path):
    bare = [ModelInput(m.name, m.level, m.status, m.metrics, m.info) if m.name == "good_tree"
            else m for m in inputs.models]
    data = build_report(ReportInputs(inputs.record, bare, inputs.snapshots))
    assert data.sections[0].missing_predictions == ["good_tree"]
    html = render_report(data, tmp_path).read_text()
    assert "No calibration or map for good_tree" in html


def test_map_figure_is_a_png(tmp_path: Path):
    gid = gid_from_rowcol([200, 200, 201], [400, 401, 400])
    png = plots.error_map_figure("t", gid, [0.1, 0.5, 2.0], vmax=2.0)
    assert png.startswith(PNG_MAGIC)


def _scored_of(inputs: ReportInputs, name: str):
    model = next(m for m in inputs.models if m.name == name)
    return join_actuals(model.forecast, model.actuals)


def test_verdict_table_comes_first_with_the_compare_numbers(inputs, data, page):
    html = page.read_text()
    verdict = html.index('<h2 id="verdict">')
    assert verdict < html.index("<h2>Run</h2>") and verdict < html.index("<img")
    table = html[verdict:html.index("</table>", verdict)]
    cm, pgm = data.sections
    assert [v.model for v in cm.verdicts] == ["calm_chorus", "good_tree"]  # deployed only
    assert [v.model for v in pgm.verdicts] == ["grid_tree"]
    best_cm = min((r for r in cm.rows if r.baseline), key=lambda r: r.pooled["msle"]).name
    for section in (cm, pgm):
        for v in section.verdicts:
            ref = compare_forecasts(_scored_of(inputs, v.baseline),
                                    _scored_of(inputs, v.model), metric="msle")
            assert v.dm is not None and ref.dm is not None
            assert v.dm.statistic == pytest.approx(ref.dm.statistic, rel=1e-12)
            assert v.dm.p_value == pytest.approx(ref.dm.p_value, rel=1e-12)
            assert (v.value, v.baseline_value) == pytest.approx(
                (ref.values["pooled"].b, ref.values["pooled"].a), rel=1e-12)
            words = {"B better": "better", "A better": "worse"}.get(ref.dm.verdict,
                                                                   ref.dm.verdict)
            assert v.verdict == words
            row = re.search(rf'<td class="name">{v.model}</td>(.*?)</tr>', table).group(1)
            assert f"{v.dm.statistic:+.3f}" in row and f">{words}<" in row
    assert {v.baseline for v in cm.verdicts} == {best_cm}
    assert pgm.verdicts[0].verdict == "worse"  # grid_tree predicts ~18x the grid baseline


def test_deployed_ensemble_on_top_and_log_axes_despite_zero_baseline(data):
    cm = data.sections[0]
    by_step, by_month = cm.curves["msle"]
    marks = {ln.label: (ln.note, ln.on_top) for ln in by_month}
    assert marks["calm_chorus"] == ("deployed ensemble", True)
    assert marks["good_tree"] == ("deployed", False)
    assert marks["all_zero"] == ("", False)
    fig = Figure()
    left, right = plots.draw_metric(fig, "cm MSLE", "MSLE", by_step, by_month)
    for ax, lines in ((left, by_step), (right, by_month)):
        values = np.concatenate([ln.y for ln in lines])
        assert ax.get_yscale() == ("symlog" if (values == 0).any() else "log")
        drawn = {ln.get_label(): ln for ln in ax.get_lines()}
        top = drawn["calm_chorus (deployed ensemble)"]
        others = [ln for label, ln in drawn.items() if ln is not top]
        assert all(top.get_zorder() > o.get_zorder() for o in others)
        assert all(top.get_linewidth() > o.get_linewidth() for o in others)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "calm_chorus (deployed ensemble)" in legend and "all_zero (baseline)" in legend


def test_y_scale_rules():
    x = np.arange(3.0)
    assert plots.y_scale([Line("a", x, np.array([0.5, 2.0, 30.0]))]) == ("log", {})
    zeros = [Line("zero", x, np.zeros(3), True), Line("m", x, np.array([0.02, 0.5, np.nan]))]
    assert plots.y_scale(zeros) == ("symlog", {"linthresh": 0.01})
    assert plots.y_scale([Line("z", x, np.zeros(3))])[0] == "linear"
    assert plots.y_scale([Line("r", x, np.array([-0.2, 0.5, 0.9]))])[0] == "linear"


def test_figures_are_files_listed_with_the_page(page):
    files = report_files(page.parent)
    assert files == sorted(files) and page in files
    pngs = [f for f in files if f.suffix == ".png"]
    assert {f.name for f in pngs} == set(re.findall(r"\(file: report/([^)]+\.png)\)",
                                                   page.read_text()))
    assert all(f.is_file() and f.read_bytes().startswith(PNG_MAGIC) for f in pngs)
    assert len(files) == len(pngs) + 1


def test_units_are_named_in_the_worst_unit_tables_and_map_captions(data, page):
    html = page.read_text()
    cm, pgm = data.sections
    worst = {w.model: w for w in cm.worst}
    assert set(worst) == {"calm_chorus", "good_tree"}
    w = worst["good_tree"]
    assert list(w.msle) == sorted(w.msle, reverse=True)
    assert w.label[0] == f"Land {w.unit[0]} (L{w.unit[0]:02d})"
    assert f'<td class="name">{w.label[0]}</td>' in html
    assert "Largest errors by cell" in html and "(Land 1)" in pgm.worst[0].label[0]
    assert re.search(r"largest: cell \d+ \(Land 1\)", html)
