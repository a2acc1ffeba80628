"""The dashboard's interactions in headless chromium, on the session's workspace and server
(conftest): zoom and pan change the map's viewBox and reset restores it; the address keeps
the chosen view and reopens it; the CSV download holds every unit of the shown map; the
legend names its units; alerts are grouped by kind with counts. Screenshots are saved as
test artifacts."""

from __future__ import annotations

import csv
import json
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
from test_dashboard_browser import _css, _map_ready, _no_console_errors, _screenshot, _wait

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def driver(browser: Any) -> Any:
    """The session's browser, its console log emptied of what earlier tests left there."""
    browser.get_log("browser")
    return browser


def _get(server: str, path: str, **params: Any) -> Any:
    with urllib.request.urlopen(f"{server}{path}?{urlencode(params)}", timeout=30) as response:
        return json.load(response)


def _box(driver: Any) -> list[float]:
    return [float(x) for x in driver.find_element("css selector", "#map svg")
            .get_dom_attribute("viewBox").split()]


def _map_point(driver: Any, client_x: float, client_y: float) -> list[float]:
    """The map coordinates under a point of the window."""
    return list(driver.execute_script(
        "const svg = document.querySelector('#map svg'); const pt = svg.createSVGPoint();"
        "pt.x = arguments[0]; pt.y = arguments[1];"
        "const p = pt.matrixTransform(svg.getScreenCTM().inverse()); return [p.x, p.y];",
        client_x, client_y))


def _query(driver: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(driver.current_url).query).items()}


def _open(driver: Any, url: str) -> None:
    driver.get(url)
    _map_ready(driver)


def test_zoom_and_pan_change_the_view_and_reset_restores_it(
    driver: Any, server: str, artifacts: Path,
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    from selenium.webdriver.common.keys import Keys

    _open(driver, f"{server}/dashboard")
    home = _box(driver)
    assert driver.find_element("id", "zoom-reset").get_attribute("disabled")

    # the + button: the view narrows around its centre
    driver.find_element("id", "zoom-in").click()
    box = _box(driver)
    assert box[2:] == pytest.approx([home[2] / 1.5, home[3] / 1.5], abs=1e-3)  # 4 decimals
    assert box[0] + box[2] / 2 == pytest.approx(home[0] + home[2] / 2, abs=1e-3)

    # the wheel zooms in around the cursor: the map point under it stays under it
    svg = driver.find_element("css selector", "#map svg")
    rect = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return [r.x + r.width / 2, r.y + r.height / 2];", svg)
    cursor = (rect[0] + 120, rect[1] + 40)
    before = _map_point(driver, *cursor)
    ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(svg, 120, 40), 0,
                                            -200).perform()
    _wait(driver, lambda d: _box(d)[2] < box[2] - 1e-6, "the wheel zoom")
    after = _map_point(driver, *cursor)
    assert after == pytest.approx(before, abs=box[2] / 100)

    # a drag pans (the view moves against the pointer) and selects no unit
    box = _box(driver)
    ActionChains(driver).move_to_element(svg).click_and_hold().move_by_offset(60, 0) \
        .move_by_offset(60, 0).release().perform()
    panned = _box(driver)
    assert panned[0] < box[0] and panned[2:] == box[2:]
    assert "unit" not in _query(driver)
    assert not driver.find_element("id", "unit-chart").get_attribute("data-unit")
    assert not _css(driver, "#map .selected")

    # another month keeps the zoom
    driver.find_element("id", "step").send_keys(Keys.RIGHT)
    _wait(driver, lambda d: _query(d).get("step") == "2", "step 2 in the address")
    _wait(driver, lambda d: "· 2023-06 ·" in d.find_element("id", "map-status").text,
          "the map of step 2")
    assert _box(driver) == panned
    _screenshot(driver, artifacts, "dashboard-zoomed.png")

    # keyboard: the focused map zooms out with "-"; the reset button works with Enter
    svg = driver.find_element("css selector", "#map svg")
    svg.send_keys("-")
    assert _box(driver)[2] == pytest.approx(panned[2] * 1.5, abs=1e-3)
    driver.find_element("id", "zoom-reset").send_keys(Keys.ENTER)
    assert _box(driver) == home
    assert driver.find_element("id", "zoom-out").get_attribute("disabled")
    _no_console_errors(driver)


def test_the_address_reopens_the_chosen_view(driver: Any, server: str) -> None:
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    _open(driver, f"{server}/dashboard")
    assert urlparse(driver.current_url).query == ""  # nothing chosen yet: a clean address
    Select(driver.find_element("id", "model")).select_by_value("past_draws")
    _wait(driver, lambda d: "past_draws" in d.find_element("id", "map").get_attribute(
        "innerHTML"), "the past_draws map")
    _map_ready(driver)
    step = driver.find_element("id", "step")
    step.send_keys(Keys.RIGHT)
    step.send_keys(Keys.RIGHT)
    _wait(driver, lambda d: "· 2023-07 ·" in d.find_element("id", "map-status").text,
          "the map of step 3")
    button = _css(driver, "#top-units tbody button")[1]
    unit = button.get_attribute("data-unit")
    button.click()
    _wait(driver, lambda d: d.find_element("id", "unit-chart").get_attribute("data-unit") == unit,
          f"the chart of unit {unit}")
    run = driver.find_element("id", "run").get_attribute("value")
    url = driver.current_url
    assert _query(driver) == {"env": driver.find_element("id", "env").get_attribute("value"),
                              "level": "cm", "model": "past_draws", "run": run, "step": "3",
                              "unit": unit}

    # a new page load from the copied address: the same model, run, month and unit
    driver.get(f"{server}/dashboard")
    _map_ready(driver)
    _open(driver, url)
    _wait(driver, lambda d: d.find_element("id", "unit-chart").get_attribute("data-unit") == unit,
          f"the chart of unit {unit} after the reload")
    assert Select(driver.find_element("id", "model")).first_selected_option.get_attribute(
        "value") == "past_draws"
    assert driver.find_element("id", "run").get_attribute("value") == run
    assert driver.find_element("id", "step").get_attribute("value") == "3"
    assert "· 2023-07 ·" in driver.find_element("id", "map-status").text
    assert "past_draws" in driver.find_element("id", "unit-legend").text
    assert _css(driver, f'#map path.outline.selected[data-outline="{unit}"]')
    assert driver.current_url == url

    # the grid level and a cell; a model this workspace lacks falls back to the default,
    # a step no forecast has to step 1 (the address then says what is shown)
    env = driver.find_element("id", "env").get_attribute("value")
    pgm = next(e for e in _get(server, "/dashboard/data/overview")["environments"]
               if e["name"] == env)["levels"]["pgm"]
    gid = _get(server, "/dashboard/data/map", env=env, level="pgm", model=pgm["default_model"],
               step=1)["units"][7][0]
    _open(driver, f"{server}/dashboard?level=pgm&model=no_such_model&step=99&unit={gid}")
    _wait(driver, lambda d: d.find_element("id", "unit-chart").get_attribute("data-unit")
          == str(gid), f"the chart of cell {gid}")
    assert driver.find_element("id", "level").get_attribute("value") == "pgm"
    assert _css(driver, f'#map rect.cell.selected[data-unit="{gid}"]')
    _wait(driver, lambda d: _query(d).get("step") == "1", "step 1 in the address")
    query = _query(driver)
    assert query["model"] == pgm["default_model"]
    assert driver.find_element("id", "model").get_attribute("value") == pgm["default_model"]
    assert query["level"] == "pgm" and query["unit"] == str(gid)
    _no_console_errors(driver)


def _downloaded(folder: Path, timeout: float = 15) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [p for p in folder.glob("*.csv")]
        if done and not list(folder.glob("*.crdownload")):
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"no CSV downloaded into {folder}: {list(folder.iterdir())}")


def test_csv_download_holds_every_unit_of_the_shown_map(
    driver: Any, server: str, tmp_path: Path,
) -> None:
    from selenium.webdriver.common.keys import Keys

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    _open(driver, f"{server}/dashboard")
    driver.find_element("id", "step").send_keys(Keys.RIGHT)
    _wait(driver, lambda d: "· 2023-06 ·" in d.find_element("id", "map-status").text,
          "the map of step 2")
    _map_ready(driver)
    driver.find_element("id", "map-csv").click()
    path = _downloaded(downloads)
    with path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))

    env = driver.find_element("id", "env").get_attribute("value")
    model = driver.find_element("id", "model").get_attribute("value")
    run = driver.find_element("id", "run").get_attribute("value")
    shown = _get(server, "/dashboard/data/map", env=env, level="cm", model=model, run=run,
                 step=2)
    assert path.name == f"ewspipe-{env}-cm-{model}-2023-06.csv"
    assert header[0] == "country_id" and header[-1] == "predicted_ged_sb"
    col = {name: i for i, name in enumerate(header)}
    labels = shown.get("labels") or {}  # the units' names, where the payload carries them
    assert ("name" in col) == any(labels.values())
    if "name" in col:
        assert {r[0]: r[col["name"]] for r in rows} == {str(u): labels.get(str(u)) or ""
                                                        for u, _ in shown["units"]}
    # one row per unit of the map, the stored values (raw counts), the month shown
    assert len(rows) == len(shown["units"])
    assert f"{len(rows)} rows saved as {path.name}" in driver.find_element("id",
                                                                            "map-csv-help").text
    values = {int(r[0]): float(r[col["predicted_ged_sb"]]) for r in rows}
    assert values == {u: v for u, v in shown["units"]}
    assert {(r[col["model"]], r[col["run"]], r[col["step"]], r[col["month"]]) for r in rows} \
        == {(model, run, "2", "2023-06")}
    # every shape on the map is a row with the value it is coloured by; the table's order
    for shape in _css(driver, "#map svg path.country"):
        assert values[int(shape.get_attribute("data-unit"))] == float(
            shape.get_attribute("data-value"))
    table = [b.get_attribute("data-unit") for b in _css(driver, "#top-units tbody button")]
    assert [r[0] for r in rows[:len(table)]] == table
    _no_console_errors(driver)


def test_legend_names_its_units_and_alerts_are_grouped_by_kind(
    driver: Any, server: str, artifacts: Path,
) -> None:
    _open(driver, f"{server}/dashboard")
    legend = driver.find_element("id", "legend").text
    for words in ("Predicted fatalities per month", "ged_sb", "raw counts", "log scale",
                  "< 0.1", "1\u20133", "\u2265 1000"):
        assert words in legend, legend

    env = driver.find_element("id", "env").get_attribute("value")
    feed = _get(server, "/dashboard/data/alerts", env=env, limit=200)["alerts"]
    kinds = Counter(a["source"] for a in feed)
    assert len(kinds) >= 2, "the workspace should hold alerts of several kinds"
    _wait(driver, lambda d: len(_css(d, "#alert-list details.alert-group")) == len(kinds),
          "the alert groups")
    groups = _css(driver, "#alert-list details.alert-group")
    shown = {g.get_attribute("data-kind"): int(g.find_element("css selector", "summary .count")
                                               .text) for g in groups}
    assert shown == dict(kinds)
    for g in groups:
        assert len(g.find_elements("css selector", "li")) == shown[g.get_attribute("data-kind")]
        assert not g.get_attribute("open")
    # a group opens (keyboard: Enter on its summary) and shows its alerts
    first = groups[0]
    first.find_element("css selector", "summary").send_keys("\ue007")  # Enter
    _wait(driver, lambda d: first.get_attribute("open") is not None, "the opened group")
    assert all(li.is_displayed() for li in first.find_elements("css selector", "li"))
    assert str(sum(kinds.values())) in driver.find_element("id", "alerts-status").text
    driver.execute_script("document.getElementById('alerts').scrollIntoView()")
    _screenshot(driver, artifacts, "dashboard-alerts.png")
    _no_console_errors(driver)
