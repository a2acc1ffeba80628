"""`ewspipe evaluate --report` and `ewspipe evaluate report RUN` end to end on the demo world."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.cli.model_files import baseline

from ewspipe.cli.main import main
from ewspipe.evaluation import plots
from ewspipe.evaluation.report import report_files

SMALL_TREE = """
name = "{name}"
level = "{level}"
target = "ged_sb"
algorithm = "stepshifter"
status = "deployed"
owner = "tests"
description = "A quick LightGBM stepshifter."
features = ["ged_sb", "lag(ged_sb, 1)", "mmean(ged_sb, 12)", "time_since(ged_sb, 1)"]

[hyperparameters]
learner = "lightgbm"
seed = 7

[hyperparameters.learner_params]
n_estimators = 10
"""


MODELS = {
    "small_tree": SMALL_TREE.format(name="small_tree", level="cm"),
    "zero_line": baseline("zero_line", "zero", "cm"),
    "last_value": baseline("last_value", "locf", "cm"),
    "past_draws": baseline("past_draws", "conflictology", "cm"),
    "grid_tree": SMALL_TREE.format(name="grid_tree", level="pgm"),
    "zero_grid": baseline("zero_grid", "zero", "pgm"),
}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "ewspipe.toml"
        self.state = root / "state"

    def run(self, *args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--config", str(self.config), "--state-dir", str(self.state), *args])
        return code, out.getvalue(), err.getvalue()

    def json(self, *args: str) -> tuple[int, dict[str, Any]]:
        code, out, err = self.run(*args, "--json")
        assert out, err
        return code, json.loads(out)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("ws")
    (root / "models").mkdir()
    for name, text in MODELS.items():
        (root / "models" / f"{name}.toml").write_text(text)
    (root / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n')
    space = Workspace(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        code, _, err = space.run("data", "demo", "--countries", "30", "--pgm-cells", "100",
                                 "--last-month", "520")
    assert code == 0, err
    return space


@pytest.fixture(scope="module")
def evaluated(ws: Workspace) -> dict[str, Any]:
    code, doc = ws.json("evaluate", "--run-type", "calibration", "--report")
    assert code == 0, doc
    return doc


def _pngs(report: Path) -> list[Path]:
    return sorted(report.parent.glob("*.png"))


def test_report_is_self_contained(evaluated):
    page = Path(evaluated["report"])
    assert page.is_file() and page.parent == Path(evaluated["path"]) / "report"
    html = page.read_text()
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', html, flags=re.I)
    assert all(r.startswith("data:image/png;base64,") for r in refs), refs
    assert not re.search(r"<(script|link|iframe|object)\b", html, flags=re.I)
    assert "http://" not in html and "https://" not in html
    for model in MODELS:
        assert model in html
    for level in ("cm", "pgm"):
        snap = evaluated["snapshots"][level]
        assert snap["id"] in html and snap["sha256"] in html and snap["fetched_at"] in html
    assert evaluated["run_id"] in html and evaluated["code"]["commit"] in html
    pngs = _pngs(page)
    assert len(pngs) == html.count('src="data:image/png;base64,')
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and b"Software" not in data
        with Image.open(png) as img:
            img.verify()
    names = {p.name for p in pngs}
    assert {"cm_msle.png", "cm_mse.png", "cm_crps.png", "cm_calibration.png",
            "pgm_msle.png", "pgm_mse.png", "pgm_calibration.png"} <= names
    assert {"pgm_map_grid_tree.png", "pgm_map_zero_grid.png"} <= names  # the pgm error map
    assert not any(n.startswith("cm_map") for n in names)
    assert "nothing was left unscored" in html
    assert [p.name for p in report_files(page.parent)] == sorted([*names, "index.html"])
    verdict = html.index('<h2 id="verdict">')  # the verdict first, above every figure
    assert verdict < html.index("<h2>Run</h2>") < html.index("<img")
    table = html[verdict:html.index("</table>", verdict)]
    for model, against in (("small_tree", "last_value|zero_line|past_draws"),
                            ("grid_tree", "zero_grid")):
        assert re.search(rf'<td class="name">{model}</td><td class="text">model, deployed'
                         rf'</td><td>[^<]+</td><td class="name">({against})</td>', table)
    assert re.search(r'Largest errors by country.*?<td class="name">country \d+</td>', html,
                     flags=re.S)  # the demo world has no names: labelled by id


def test_rerender_gives_the_same_report(ws, evaluated):
    page = Path(evaluated["report"])
    before = {p.name: p.read_bytes() for p in _pngs(page)}
    html = page.read_text()
    code, doc = ws.json("evaluate", "report", evaluated["run_id"])
    assert code == 0, doc
    assert doc["report"] == str(page) and doc["run_id"] == evaluated["run_id"]
    assert sorted(doc["images"]) == sorted(before)
    assert {p.name: p.read_bytes() for p in _pngs(page)} == before
    assert page.read_text() == html
    leftovers = [p.name for p in page.parent.parent.iterdir() if p.name.startswith(".report")]
    assert leftovers == []


def test_unknown_or_forecast_run_exits_2(ws):
    code, _, err = ws.run("evaluate", "report", "no_such_run")
    assert code == 2 and "no run matches 'no_such_run'" in err
    code, doc = ws.json("forecast", "--model", "zero_line")
    assert code == 0
    code, _, err = ws.run("evaluate", "report", doc["run_id"])
    assert code == 2 and "forecast run" in err and "evaluation runs" in err


def test_text_output_names_the_report_and_unscored_rows(ws):
    code, out, err = ws.run("evaluate", "--run-type", "validation", "--model", "zero_line",
                            "--model", "last_value", "--report")
    assert code == 0, err
    found = re.search(r"^  report: (\S+)$", out, flags=re.M)
    assert found, out
    html = Path(found.group(1)).read_text()
    assert "without actuals" in html and "521 (2023-05) .. 540 (2024-12)" in html


def test_report_failure_keeps_the_run(ws, monkeypatch):
    def boom(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("no canvas today")

    monkeypatch.setattr(plots, "calibration_figure", boom)
    code, doc = ws.json("evaluate", "--run-type", "calibration", "--model", "zero_line",
                        "--report")
    assert code == 1
    assert doc["report"] is None and "no canvas today" in doc["report_error"]
    run_dir = Path(doc["path"])
    assert (run_dir / "run.json").is_file() and (run_dir / "metrics" / "zero_line.json").is_file()
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "metrics", "predictions", "run.json", "run.json.sha256"]


def test_report_is_logged_to_the_runs_mlflow_run(evaluated):
    """`evaluate --report` writes the report after tracking the run: it is logged to it."""
    pytest.importorskip("mlflow")
    tracked = evaluated["report_tracking"]
    assert tracked["status"] == "logged", tracked
    assert tracked["parent_run_id"] == evaluated["tracking"]["parent_run_id"]
