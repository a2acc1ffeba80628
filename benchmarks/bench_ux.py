"""What issue 19 added for people, on the real VIEWS cm data: country shapes, names, pyfunc.

Three cases, each a child process (``python -m benchmarks.bench_ux CASE <cm file>``) that
imports the real cm file into a fresh workspace's snapshot store (not timed), then times the
calls itself and prints JSON; ``verify`` checks the result against independent readings of
the input files:

* ``geometry``: :func:`ewspipe.geography.country_geometry` (what the dashboard's
  ``/dashboard/data/geometry`` answers), its first call in the process (shapely import, the
  global PRIO-GRID cell -> country table read and hashed, every country merged) and warm
  calls (cached shapes; the table is still read and hashed), the two cold parts on their
  own, and the payload's bytes uncompressed and gzip-compressed (what the app sends a browser
  that accepts gzip: its GZipMiddleware). Checked: the countries drawn for
  the snapshot's last month are exactly those with cells in the table, each country's
  shape counts its cells of the table, and every country left out is listed by name.
* ``names``: :func:`ewspipe.geography.unit_names` for the cm snapshot, cold and warm, and
  labelling every unit of the last month; every label is the file's "name (ISO)".
* ``pyfunc``: one real cm forecast (``last_value``, 36 steps x every country of the last
  month) through :func:`ewspipe.store.pyfunc.save_forecast_model` next to writing the
  forecast Parquet alone (the file it wraps), then ``mlflow.pyfunc.load_model`` and
  ``predict(None)``, whose rows must equal the forecast exactly.

There are no targets in the issue for these: every case is context (verdict n/a).
"""

from __future__ import annotations

import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    CM_FILE,
    REPO,
    Benchmark,
    Case,
    SetupError,
    VerificationError,
    shared_dir,
)

__all__ = ["BENCHMARKS"]

WARM = 5  # warm calls per measure (median reported)
STEPS = 36
_MODEL = """name = "{name}"
level = "cm"
target = "ged_sb"
algorithm = "{algorithm}"
features = []
status = "baseline"
owner = "benchmarks"
description = "A cheap real cm forecast for the benchmark."
{extra}"""
# the cheapest forecast (a point: 1 draw), and the repo's probabilistic baseline (100 draws)
MODELS = {
    "last_value": _MODEL.format(name="last_value", algorithm="locf", extra=""),
    "past_draws": _MODEL.format(name="past_draws", algorithm="conflictology", extra=(
        "\n[hyperparameters]\nw = 12\nn_samples = 100\nseed = 20240701\n")),
}


def _timed(func: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = func()
    return value, time.perf_counter() - t0


def _warm(func: Callable[[], Any], n: int = WARM) -> float:
    return statistics.median(_timed(func)[1] for _ in range(n))


def _workspace(root: Path, source: Path) -> Any:
    """Settings of a fresh workspace holding the real cm file as its only snapshot."""
    from ewspipe.panel.ingest import import_panel_file
    from ewspipe.panel.snapshot import SnapshotStore
    from ewspipe.settings import load_settings

    config = root / "ewspipe.toml"
    config.write_text('[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    settings = load_settings(config)
    import_panel_file(source, "cm", SnapshotStore(settings.snapshot_dir))
    return settings


def _last_month(source: Path) -> Any:
    """The cm file's last month, read with pandas alone (the independent reference)."""
    import pandas as pd

    frame = pd.read_parquet(source)
    return frame[frame["month_id"] == frame["month_id"].max()].set_index("country_id")


# --------------------------------------------------------------------------- children


def _geometry(root: Path, source: Path) -> dict[str, Any]:
    import pandas as pd
    from starlette.responses import JSONResponse

    from ewspipe.geography import country_geometry
    from ewspipe.geography.shapes import build_shapes
    from ewspipe.geography.table import read_cell_countries, table_path

    settings = _workspace(root, source)
    geo, cold = _timed(lambda: country_geometry(settings))
    warm = _warm(lambda: country_geometry(settings))
    path = table_path(settings)[0]
    table, read_s = _timed(lambda: read_cell_countries(path))
    _, merge_s = _timed(lambda: build_shapes(table.gids, table.country_ids))
    body = JSONResponse(geo).body  # the bytes /dashboard/data/geometry serves
    # reference: the table and the cm file read with pandas, not through ewspipe
    cells = pd.read_parquet(path)
    per_country = cells.groupby("country_id").size()
    units = set(_last_month(source).index.astype(int))
    with_cells = units & set(per_country.index.astype(int))
    drawn = units & {int(c) for c in geo["countries"]}
    shape_cells = {int(c): int(s["cells"]) for c, s in geo["countries"].items()}
    return {
        "cold_s": cold, "warm_s": warm, "table_read_s": read_s, "merge_s": merge_s,
        "table_cells": len(cells), "table_countries": int(per_country.size),
        "shapes": len(geo["countries"]), "source": geo["source"], "note": geo["note"],
        "bytes": len(body), "gzip_bytes": len(gzip.compress(bytes(body), compresslevel=6)),
        "units": len(units), "units_with_cells": len(with_cells), "drawn": len(drawn),
        "drawn_is_with_cells": drawn == with_cells,
        "cells_match": shape_cells == {int(c): int(n) for c, n in per_country.items()},
        "left_out": sorted(units - drawn),
        "left_out_labels": [m["label"] for m in geo["missing"] if m["country_id"] in units],
        "listed_missing": sorted(int(m["country_id"]) for m in geo["missing"]),
        "missing_total": len(geo["missing"]),
    }


def _names(root: Path, source: Path) -> dict[str, Any]:
    from ewspipe.geography import unit_labels, unit_names

    settings = _workspace(root, source)
    names, cold = _timed(lambda: unit_names(settings, "cm"))
    warm = _warm(lambda: unit_names(settings, "cm"))
    last = _last_month(source)
    units = [int(u) for u in last.index]
    labels, label_s = _timed(lambda: unit_labels(settings, "cm", units))
    label_warm = _warm(lambda: unit_labels(settings, "cm", units))
    want = {int(u): f"{r.country_name} ({r.isoab})" for u, r in last.iterrows()}
    wrong = [u for u in units if labels[u] != want[u]]
    return {
        "cold_s": cold, "warm_s": warm, "label_s": label_s, "label_warm_s": label_warm,
        "named": len(names.name), "units": len(units), "labelled": len(labels),
        "wrong": wrong[:5], "n_wrong": len(wrong), "example": labels.get(117),
    }


def _pyfunc_one(root: Path, name: str, forecast: Any, forecast_s: float) -> dict[str, Any]:
    """Parquet write, pyfunc save, load and predict for one forecast (mlflow imported)."""
    import mlflow.pyfunc
    import numpy as np

    from ewspipe.store import pyfunc
    from ewspipe.store.predictions import read_forecast, write_forecast

    meta = {"model": name, "level": "cm", "target": "ged_sb"}
    parquet = root / f"{name}.parquet"
    write_s = [_timed(lambda: write_forecast(forecast, parquet, metadata=meta))[1]
               for _ in range(1 + WARM)]
    _, read_s = _timed(lambda: read_forecast(parquet))
    tags = {"ewspipe.model": name}
    folders = [root / f"{name}-model{i}" for i in range(1 + WARM)]
    save_s = [_timed(lambda f=f: pyfunc.save_forecast_model(f, parquet, metadata=tags))[1]
              for f in folders]
    model, load_s = _timed(lambda: mlflow.pyfunc.load_model(str(folders[0])))
    got, predict_cold = _timed(lambda: model.predict(None))
    predict_warm = _warm(lambda: model.predict(None))
    unit = forecast.unit_column
    keys = ["origin", "step", "month_id", unit]
    draws = np.asarray(got["samples"].tolist(), dtype=np.float64)
    exact = (list(got.columns) == [*keys, "point", "samples"]
             and got[keys].equals(forecast.frame[keys].reset_index(drop=True).astype("int64"))
             and np.array_equal(got["point"].to_numpy(), forecast.point)
             and np.array_equal(draws, forecast.samples))
    return {
        "model": name, "rows": len(forecast), "countries": int(forecast.frame[unit].nunique()),
        "steps": int(forecast.frame["step"].nunique()), "samples": forecast.n_samples,
        "predict_rows": len(got), "exact": bool(exact), "forecast_s": forecast_s,
        "write_cold_s": write_s[0], "write_s": statistics.median(write_s[1:]),
        "read_s": read_s, "save_cold_s": save_s[0], "save_s": statistics.median(save_s[1:]),
        "load_s": load_s, "predict_cold_s": predict_cold, "predict_s": predict_warm,
        "parquet_bytes": parquet.stat().st_size,
        "model_bytes": sum(f.stat().st_size for f in folders[0].rglob("*") if f.is_file()),
    }


def _pyfunc(root: Path, source: Path) -> dict[str, Any]:
    import ewspipe
    from ewspipe.settings import load_settings

    (root / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n\n'
                                       "[tracking]\nenabled = false\n")
    settings = load_settings(root / "ewspipe.toml")
    panel = ewspipe.load_panel(source)
    forecasts = {}
    for name, toml in MODELS.items():
        (root / f"{name}.toml").write_text(toml)
        forecasts[name] = _timed(
            lambda name=name: ewspipe.forecast(root / f"{name}.toml", panel, settings=settings))
    _, import_s = _timed(lambda: __import__("ewspipe.store.pyfunc"))  # mlflow, once
    return {
        "last_month_units": len(_last_month(source)), "mlflow_import_s": import_s,
        # the point forecast first: its save pays the process's first-save costs
        "models": [_pyfunc_one(root, name, *forecasts[name]) for name in MODELS],
    }


CHILDREN: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "geometry": _geometry, "names": _names, "pyfunc": _pyfunc,
}


# --------------------------------------------------------------------------- verification


def _doc(stdout: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise VerificationError(f"no JSON result in the output ({exc})") from exc
    return doc


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def _table(rows: list[tuple[str, str]]) -> str:
    return "\n".join(["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def _verify_geometry(stdout: str) -> str:
    d = _doc(stdout)
    problems = []
    if "views-reporting" not in str(d["source"]) or d["note"] is not None:
        problems.append(f"shapes not from the global table: {d['source']!r} ({d['note']})")
    if not d["drawn_is_with_cells"] or d["drawn"] != d["units_with_cells"]:
        problems.append(f"{d['drawn']} countries drawn, {d['units_with_cells']} have cells")
    if d["shapes"] != d["table_countries"] or not d["cells_match"]:
        problems.append(f"{d['shapes']} shapes for the table's {d['table_countries']} "
                        "countries, or a shape's cell count differs from the table")
    unlisted = sorted(set(d["left_out"]) - set(d["listed_missing"]))
    if unlisted:
        problems.append(f"left out without being listed as missing: {unlisted}")
    if problems:
        raise VerificationError("; ".join(problems))
    return _table([
        ("countries drawn / countries of the snapshot's last month",
         f"{d['drawn']} / {d['units']} (= those with cells in the table; left out, listed "
         f"by name: {', '.join(d['left_out_labels']) or 'none'})"),
        ("shapes built (countries of the global table)",
         f"{d['shapes']} from {d['table_cells']:,} cells"),
        ("snapshot ids without cells, listed by name in `missing`",
         f"{d['missing_total']} (the {len(d['left_out'])} above and ids of the past, e.g. "
         "USSR)"),
        ("first call in a fresh process (import shapely, read + hash table, merge)",
         _ms(d["cold_s"])),
        ("  of which: table read + check", _ms(d["table_read_s"])),
        ("  of which: shapely merge of all countries (warm import)", _ms(d["merge_s"])),
        ("warm call (cached shapes; table re-read and hashed)", _ms(d["warm_s"])),
        ("cold / warm", f"{d['cold_s'] / d['warm_s']:.0f}x"),
        ("payload as served (JSON, uncompressed)", f"{d['bytes']:,} B"),
        ("payload gzip -6 (as sent to a browser accepting gzip)",
         f"{d['gzip_bytes']:,} B ({d['bytes'] / d['gzip_bytes']:.1f}x smaller)"),
    ])


def _verify_names(stdout: str) -> str:
    d = _doc(stdout)
    if d["labelled"] != d["units"] or d["n_wrong"]:
        raise VerificationError(f"{d['labelled']} of {d['units']} units labelled, "
                                f"{d['n_wrong']} not the file's 'name (ISO)': {d['wrong']}")
    return _table([
        ("units of the last month labelled 'name (ISO)' as in the file",
         f"{d['labelled']} / {d['units']} (e.g. 117 -> {d['example']}); "
         f"{d['named']} ids named in the snapshot"),
        ("unit_names, first call (reads the snapshot's name columns)", _ms(d["cold_s"])),
        ("unit_names, warm (cached per snapshot)", _ms(d["warm_s"])),
        (f"unit_labels for all {d['units']} units, first / warm",
         f"{_ms(d['label_s'])} / {_ms(d['label_warm_s'])}"),
    ])


def _verify_pyfunc(stdout: str) -> str:
    d = _doc(stdout)
    want = STEPS * d["last_month_units"]
    for m in d["models"]:
        if m["rows"] != want or m["steps"] != STEPS or m["countries"] != d["last_month_units"]:
            raise VerificationError(f"{m['model']}: forecast of {m['rows']} rows ({m['steps']} "
                                    f"steps x {m['countries']} countries), expected {want}")
        if m["predict_rows"] != m["rows"] or not m["exact"]:
            raise VerificationError(f"{m['model']}: predict(None) gave {m['predict_rows']} "
                                    f"rows, not exactly the {m['rows']} rows of the forecast")
    models = d["models"]

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return f"| {label} | {' | '.join(cell(m) for m in models)} |"

    return "\n".join([
        "| measure | " + " | ".join(f"`{m['model']}`" for m in models) + " |",
        f"|---|{'---|' * len(models)}",
        row(f"forecast ({STEPS} steps x {d['last_month_units']} countries)",
            lambda m: f"{m['rows']:,} rows x {m['samples']} draw(s), built in "
                      f"{_ms(m['forecast_s'])}"),
        row("write the forecast Parquet alone: warm median (first)",
            lambda m: f"{_ms(m['write_s'])} ({_ms(m['write_cold_s'])}); "
                      f"{m['parquet_bytes']:,} B"),
        f"| import mlflow.pyfunc (once per process) | {_ms(d['mlflow_import_s'])} "
        f"{'| ' * (len(models) - 1)}|",
        row("save_forecast_model: warm median (first)",
            lambda m: f"{_ms(m['save_s'])} ({_ms(m['save_cold_s'])}); folder "
                      f"{m['model_bytes']:,} B"),
        row("save_forecast_model / Parquet write: warm (first)",
            lambda m: f"{m['save_s'] / m['write_s']:.1f}x "
                      f"({m['save_cold_s'] / m['write_cold_s']:.0f}x)"),
        row("mlflow.pyfunc.load_model", lambda m: _ms(m["load_s"])),
        row("predict(None): first / warm median",
            lambda m: f"{_ms(m['predict_cold_s'])} / {_ms(m['predict_s'])}"),
        row("ewspipe read_forecast of the same Parquet (comparison)",
            lambda m: _ms(m["read_s"])),
        row("predict(None) == forecast", lambda m: f"{m['predict_rows']:,} rows; keys, point "
            "and draws exactly equal"),
    ])


VERIFY: dict[str, Callable[[str], str]] = {
    "geometry": _verify_geometry, "names": _verify_names, "pyfunc": _verify_pyfunc,
}
NOTES = {
    "geometry": "country shapes of the cm map from the global PRIO-GRID table (views-reporting "
                "wheel) for the real cm snapshot. The wall time in the table above is the "
                "whole child (with the snapshot import and the pandas reference).",
    "names": "country names and ISO codes of the real cm snapshot, as the API, dashboard "
             "and report label units.",
    "pyfunc": "the pyfunc flavour each registered model version now gets, for a point and a "
              "100-draw real cm forecast, beside the Parquet write it wraps. The point "
              "forecast is saved first: its first save pays MLflow's one-off set-up of the "
              "process (a few hundred ms), later saves cost the warm figure.",
}


def _cm_source() -> Path:
    source = shared_dir() / CM_FILE
    if not source.is_file():
        raise SetupError(f"benchmark input missing: <SHARED>/{CM_FILE} ({source})")
    return source


def _cases() -> list[Case]:
    source = _cm_source()
    # the run directory is the cwd: the repository (and its src/, so this tree's ewspipe is
    # measured) go on PYTHONPATH for the child only
    path = os.pathsep.join([str(REPO), str(REPO / "src")])
    display = ("PYTHONPATH=<repo>:<repo>/src .venv/bin/python -m benchmarks.bench_ux {} "
               f"<SHARED>/{CM_FILE}")
    return [
        Case(label=name, display=display.format(name),
             argv=lambda _, name=name: ["env", f"PYTHONPATH={path}", sys.executable, "-m",
                                        "benchmarks.bench_ux", name, str(source)],
             verify=VERIFY[name], note=NOTES[name])
        for name in CHILDREN
    ]


BENCHMARKS = [
    Benchmark(
        name="ux",
        title="country shapes, names and the pyfunc flavour on the real cm data",
        description=(
            "What issue 19 added for the people reading forecasts, on the real VIEWS cm file "
            f"(`<SHARED>/{CM_FILE}`): the cm map's country shapes merged with shapely from "
            "the global PRIO-GRID cell -> country table, unit names, and the pyfunc model "
            "each registered MLflow version now gets. Each case is a child process that "
            "imports the file into a fresh workspace (not timed) and times the calls itself "
            f"(first call, then the median of {WARM} warm ones); the figures below each "
            "table are from the last run, checked against pandas readings of the input "
            "files. No targets in the issue: context only."
        ),
        cases=_cases,
    )
]


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in CHILDREN:
        print(f"usage: python -m benchmarks.bench_ux {{{','.join(CHILDREN)}}} CM_FILE",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ewspipe-ux-") as tmp:
        result = CHILDREN[argv[0]](Path(tmp), Path(argv[1]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
