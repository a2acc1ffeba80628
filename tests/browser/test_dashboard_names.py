"""The dashboard on the real VIEWS cm data, in headless chromium: countries are named (top
table, tooltip, API rows) and the cm map draws every forecast country that the global
PRIO-GRID cell -> country table gives cells, not only those of a grid snapshot.

One small workspace for the module: the real cm file imported and one monthly run of a
last-value model (seconds), served by the real server.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_workspace import ewspipe
from live_server import serve
from test_dashboard_browser import (
    _click_inside,
    _css,
    _map_ready,
    _no_console_errors,
    _screenshot,
    _wait,
)

from ewspipe.api.app import create_app
from ewspipe.settings import load_settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CM_FILE = Path("views_ged_cm") / "views_fat002_ged_sb_cm.parquet"
MODEL = """
name = "last_value"
level = "cm"
target = "ged_sb"
algorithm = "locf"
features = []
status = "deployed"
owner = "tests"
description = "Last observation carried forward: the cheapest forecast with values."
"""


@pytest.fixture(scope="module")
def real_config(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = shared_data / CM_FILE
    if not source.is_file():
        pytest.skip(f"{source} is absent: the real VIEWS cm file is needed for this test")
    root = tmp_path_factory.mktemp("real-cm") / "ws"
    (root / "models").mkdir(parents=True)
    (root / "ensembles").mkdir()
    (root / "models" / "last_value.toml").write_text(MODEL)
    config = root / "ewspipe.toml"
    config.write_text('[workspace]\nstate_dir = "state"\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("EWSPIPE_CONFIG", raising=False)
        mp.delenv("EWSPIPE_STATE_DIR", raising=False)
        ewspipe(config, "data", "import", "panel", str(source), "--level", "cm")
        ewspipe(config, "run", "--quiet")
    return config


@pytest.fixture(scope="module")
def real_server(real_config: Path) -> Iterator[str]:
    with serve(create_app(load_settings(real_config))) as url:
        yield url


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def test_real_cm_map_draws_every_country_by_name(
    browser: Any, real_server: str, artifacts: Path,
) -> None:
    geo = _get(f"{real_server}/dashboard/data/geometry")
    assert "views-reporting" in geo["source"] and geo["note"] is None
    forecast = _get(f"{real_server}/dashboard/data/map?env=development&level=cm"
                    "&model=last_value&step=1")
    units = {u for u, _ in forecast["units"]}
    drawable = units & {int(c) for c in geo["countries"]}
    without = sorted(units - drawable)
    missing = {m["country_id"]: m["label"] for m in geo["missing"]}
    print(f"{len(drawable)} of {len(units)} forecast countries have cells; without: "
          f"{[f'{u} {missing.get(u)}' for u in without]}; snapshot countries without cells: "
          f"{sorted(missing.items())}")
    assert set(without) <= set(missing)  # every country left out is listed, by name
    assert len(drawable) >= 180  # (75 when drawn from the pgm snapshot's cells)

    driver = browser
    driver.get_log("browser")  # drop what earlier pages of the session logged
    driver.get(f"{real_server}/dashboard")
    _map_ready(driver)
    shapes = _css(driver, "#map svg path.country")
    assert {int(s.get_attribute("data-unit")) for s in shapes} == drawable
    assert len(shapes) == len(drawable)

    # the top-forecast table names the countries, in the forecast's order
    top = sorted((u for u in forecast["units"] if u[1] is not None), key=lambda u: -u[1])[:10]
    names = [b.text for b in _css(driver, "#top-units tbody button")]
    assert names == [forecast["labels"][str(u)] for u, _ in top]
    assert names[0] == "Ukraine (UKR)"  # July 2024 carried forward

    # a map tooltip names the country under the mouse
    ukraine = next(s for s in shapes if s.get_attribute("data-unit") == "117")
    _click_inside(driver, ukraine, click=False)
    _wait(driver, lambda d: d.find_element("id", "tooltip").is_displayed(), "the tooltip")
    assert driver.find_element("id", "tooltip").text.startswith("Ukraine (UKR): ")
    _screenshot(driver, artifacts, "dashboard-real-cm.png")
    _no_console_errors(driver)

    # the API's forecast rows carry the same names
    rows = _get(f"{real_server}/api/v1/forecasts/cm/ged_sb?env=development&step=1&units=117,57"
                f"&run={forecast['run']}&model=last_value")["rows"]
    assert {(r["country_id"], r["name"], r["isoab"], r["label"]) for r in rows} == {
        (117, "Ukraine", "UKR", "Ukraine (UKR)"), (57, "Ethiopia", "ETH", "Ethiopia (ETH)")}
