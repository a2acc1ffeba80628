"""The dashboard in headless chromium against the real server and a real workspace: the map
and the charts render (asserted on the DOM), clicking a unit shows its history and forecast,
nothing is fetched from another origin and the console stays clean. Screenshots are saved
as test artifacts."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dashboard_workspace import PGM_CELLS
from live_server import serve

from ewspipe.api.app import create_app
from ewspipe.panel.snapshot import DATA_FILE, SnapshotStore
from ewspipe.settings import load_settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TIMEOUT = 30


def _wait(driver: Any, condition: Any, what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, TIMEOUT).until(condition)
    except TimeoutException:
        status = driver.execute_script(
            "return [...document.querySelectorAll('.status')].map(n => n.id + ': ' + "
            "n.textContent).join(' | ')")
        raise AssertionError(f"timed out waiting for {what}; page status: {status}") from None


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _map_ready(driver: Any) -> None:
    _wait(driver, lambda d: d.find_element("id", "map").get_attribute("data-ready") == "1",
          "the map")


def _countries_with_cells(config: Path) -> set[int]:
    settings = load_settings(config)
    snap = [m for m in SnapshotStore(settings.snapshot_dir).list() if m.level == "pgm"][-1]
    frame = pd.read_parquet(settings.snapshot_dir / snap.id / DATA_FILE)
    return set(frame.loc[frame.month_id == frame.month_id.max(), "country_id"].tolist())


def _cm_units(server: str) -> set[int]:
    url = f"{server}/dashboard/data/map?env=development&level=cm&model=small_chorus&step=1"
    with urllib.request.urlopen(url, timeout=30) as response:
        return {u for u, _ in json.load(response)["units"]}


def _point_inside(driver: Any, path: Any) -> tuple[int, int]:
    """Screen coordinates of a cell centre inside a country's shape (its fill, not an edge:
    shapes are merged 0.5-degree cells, so cell centres never lie on an edge)."""
    xy = driver.execute_script(
        "const p = arguments[0]; const b = p.getBBox(); const svg = p.ownerSVGElement;"
        "const pt = svg.createSVGPoint();"
        "for (let y = Math.floor(b.y * 2) / 2 + 0.25; y < b.y + b.height; y += 0.5)"
        "  for (let x = Math.floor(b.x * 2) / 2 + 0.25; x < b.x + b.width; x += 0.5) {"
        "    pt.x = x; pt.y = y;"
        "    if (p.isPointInFill(pt)) {"
        "      const s = pt.matrixTransform(p.getScreenCTM()); return [s.x, s.y]; } }"
        "return null;", path)
    assert xy, f"no point inside the shape of unit {path.get_attribute('data-unit')}"
    return round(xy[0]), round(xy[1])


def _click_inside(driver: Any, path: Any, *, click: bool = True) -> None:
    """A real mouse move (and click) on a point inside a country's shape."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    x, y = _point_inside(driver, path)
    builder = ActionBuilder(driver)
    builder.pointer_action.move_to_location(x, y)
    if click:
        builder.pointer_action.click()
    builder.perform()
    ActionChains(driver).reset_actions()


def _no_console_errors(driver: Any) -> None:
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"console errors: {severe}"


def _screenshot(driver: Any, folder: Path, name: str) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(int(height) + 20, 6000))
    path = folder / name
    assert driver.save_screenshot(str(path)), f"screenshot {path} not written"
    assert path.stat().st_size > 10_000
    return path


def test_dashboard_renders_and_a_click_shows_the_unit(
    browser: Any, server: str, dashboard_config: Path, artifacts: Path,
) -> None:
    driver = browser
    driver.get(f"{server}/")
    assert driver.current_url.endswith("/dashboard")
    _map_ready(driver)

    # cm map: one shape per forecast country that has PRIO-GRID cells
    expected = _countries_with_cells(dashboard_config) & _cm_units(server)
    shapes = _css(driver, "#map svg path.country")
    assert {int(s.get_attribute("data-unit")) for s in shapes} == expected
    assert len(_css(driver, "#map svg path.outline")) == len(expected)
    assert len(_css(driver, "#legend .swatch")) == 9
    assert len(_css(driver, "#top-units tbody tr")) == 10

    # the release panel, the evaluation chart, the online view and the alerts rendered too
    _wait(driver, lambda d: "1 ahead, 0 behind" in d.find_element("id", "release-body").text,
          "the release status")
    release = driver.find_element("id", "release-body").text
    assert "WARN" in release and "docs: describe the baseline" in release
    assert "Tags and ledger disagree" not in release
    _wait(driver, lambda d: len(_css(d, "#eval-chart path.series")) >= 4, "the evaluation chart")
    assert len(_css(driver, "#eval-chart path.series.baseline")) == 1
    assert len(_css(driver, "#eval-chart path.series.ensemble")) == 1
    _wait(driver, lambda d: len(_css(d, "#online-chart path.series")) >= 1, "the online chart")
    _wait(driver, lambda d: len(_css(d, "#alert-list li")) > 0, "the alerts")

    # a real click on a country: its history and forecast appear
    target = next(s for s in shapes if int(s.get_attribute("data-unit")) == min(expected))
    _click_inside(driver, target)
    unit = str(min(expected))
    _wait(driver, lambda d: d.find_element("id", "unit-chart").get_attribute("data-unit") == unit,
          f"the chart of country {unit}")
    assert len(_css(driver, "#unit-chart path.observed")) == 1
    assert len(_css(driver, "#unit-chart path.forecast")) == 1
    assert len(_css(driver, "#unit-chart .axis text")) > 5
    assert f"country {unit}" in driver.find_element("id", "unit-h").text  # demo: no names
    assert _css(driver, f'#map path.outline.selected[data-outline="{unit}"]')
    _screenshot(driver, artifacts, "dashboard-cm.png")

    # the step slider moves the map to another month
    from selenium.webdriver.common.keys import Keys

    driver.find_element("id", "step").send_keys(Keys.RIGHT)
    _wait(driver, lambda d: "2023-06" in d.find_element("id", "map-status").text,
          "the map of step 2")

    # nothing came from another origin
    origins = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) <= {server}
    _no_console_errors(driver)


def test_interval_of_a_sampled_model_and_the_grid_map(
    browser: Any, server: str, artifacts: Path,
) -> None:
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(f"{server}/dashboard")
    _map_ready(driver)
    Select(driver.find_element("id", "model")).select_by_value("past_draws")
    _wait(driver, lambda d: "past_draws" in d.find_element("id", "map").get_attribute(
        "innerHTML"), "the past_draws map")
    _map_ready(driver)
    _css(driver, "#top-units tbody button")[0].click()
    _wait(driver, lambda d: _css(d, "#unit-chart path.interval"), "the forecast interval")
    assert "10-90% of samples" in driver.find_element("id", "unit-legend").text
    _screenshot(driver, artifacts, "dashboard-interval.png")

    # pgm: one square per cell, a click on a cell shows that cell
    Select(driver.find_element("id", "level")).select_by_value("pgm")
    _wait(driver, lambda d: len(_css(d, "#map svg rect.cell")) == PGM_CELLS, "the grid map")
    _map_ready(driver)
    cell = _css(driver, "#map svg rect.cell")[PGM_CELLS // 2]
    gid = cell.get_attribute("data-unit")
    cell.click()
    _wait(driver, lambda d: d.find_element("id", "unit-chart").get_attribute("data-unit") == gid,
          f"the chart of cell {gid}")
    assert f"cell {gid} (country " in driver.find_element("id", "unit-h").text
    assert len(_css(driver, "#unit-chart path.observed")) == 1
    _screenshot(driver, artifacts, "dashboard-pgm.png")
    _no_console_errors(driver)


def test_empty_workspace_says_which_command_to_run(
    browser: Any, tmp_path: Path, artifacts: Path,
) -> None:
    (tmp_path / "ewspipe.toml").write_text('[workspace]\nstate_dir = "state"\n')
    driver = browser
    with serve(create_app(load_settings(tmp_path / "ewspipe.toml"))) as url:
        driver.get(f"{url}/dashboard")
        _wait(driver, lambda d: d.find_element("id", "empty").is_displayed(), "the empty banner")
        assert "ewspipe run" in driver.find_element("id", "empty").text
        _wait(driver, lambda d: d.find_element("id", "map").get_attribute("data-ready")
              == "empty", "the empty map")
        assert "ewspipe run --env" in driver.find_element("id", "map-status").text
        _wait(driver, lambda d: "ewspipe evaluate" in d.find_element("id", "eval-status").text,
              "the evaluation hint")
        assert "online-eval" in driver.find_element("id", "online-status").text
        _screenshot(driver, artifacts, "dashboard-empty.png")
        _no_console_errors(driver)


def test_api_docs_render_offline(browser: Any, server: str, artifacts: Path) -> None:
    """/docs (Swagger UI) lists every operation of the OpenAPI document and /redoc renders,
    with the network to other hosts blocked (conftest) and nothing fetched from elsewhere."""
    driver = browser
    driver.get_log("browser")  # drop what earlier tests logged
    with urllib.request.urlopen(f"{server}/openapi.json", timeout=30) as response:
        paths = json.load(response)["paths"]
    operations = sum(len(ops) for ops in paths.values())

    driver.get(f"{server}/docs")
    _wait(driver, lambda d: len(_css(d, ".opblock")) == operations,
          f"the {operations} operations of /docs")
    assert _css(driver, '.opblock-get .opblock-summary-path[data-path="/api/v1/health"]')
    assert not _css(driver, ".swagger-ui .errors-wrapper")
    _screenshot(driver, artifacts, "api-docs.png")
    origins = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert set(origins) == {server}
    _no_console_errors(driver)

    # ReDoc's bundle draws its maker's logo from a CDN: the page's CSP blocks that one image
    driver.get(f"{server}/redoc")
    _wait(driver, lambda d: _css(d, '[id="operation/get_health_api_v1_health_get"]'),
          "the health operation in /redoc")
    _screenshot(driver, artifacts, "api-redoc.png")
    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource')"
        ".map(e => [e.name, new URL(e.name).origin])")
    assert {origin for name, origin in loaded if name != logo} == {server}, loaded
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert all(e["source"] == "security" and logo in e["message"] for e in severe), severe

    # the premise: another host is unreachable from this browser (the CDN /docs used)
    failed = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css',"
        " {mode: 'no-cors'}).then(() => done(false), () => done(true));")
    assert failed, "the browser reached another host: the offline check proves nothing"
