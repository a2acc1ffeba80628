"""UCDP GED events -> cm / pgm panels, checked against the real samples in shared/data."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ewspipe.errors import PanelError
from ewspipe.panel.priogrid import gid_from_latlon, gid_from_rowcol
from ewspipe.panel.schema import validate_panel
from ewspipe.panel.sources.ged import aggregate_events, read_events, validate_events

REPO = Path(__file__).resolve().parents[2]
COUNTS = ["ged_sb", "ged_ns", "ged_os"]
TODAY = date(2024, 7, 1)


@pytest.fixture(scope="session")
def samples(shared_data: Path) -> Path:
    return shared_data / "ucdp_ged_event_samples"


@pytest.fixture(scope="session")
def syria_events(samples: Path) -> pd.DataFrame:
    return read_events(samples / "events" / "ged_syria_2016_2019_events.parquet")


@pytest.fixture(scope="session")
def candidate_events(samples: Path) -> pd.DataFrame:
    return read_events(samples / "events" / "ged_candidate_v23_0_10_events.parquet")


@pytest.fixture(scope="session")
def views_countries(shared_data: Path) -> pd.DataFrame:
    table = pd.read_parquet(shared_data / "views_ged_cm" / "views_countries.parquet")
    # VIEWS re-keys some GW codes over time; the fat002 columns say when each id applies
    return table.rename(
        columns={"fat002_first_month": "first_month", "fat002_last_month": "last_month"}
    )


def _derived(samples: Path, name: str, columns: list[str]) -> pd.DataFrame:
    return pd.read_parquet(samples / "derived" / f"{name}.parquet")[columns]


def _sums(df: pd.DataFrame) -> list[int]:
    return [int(df[c].sum()) for c in COUNTS]


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("level", "name", "rows"), [("cm", "syria_cm", 47), ("pgm", "syria_pgm", 6909)]
)
def test_syria_reproduces_derived_tables(
    syria_events: pd.DataFrame, samples: Path, level: str, name: str, rows: int
) -> None:
    panel = aggregate_events(syria_events, level, source="syria")
    expected = _derived(samples, name, list(panel.columns))
    pd.testing.assert_frame_equal(panel, expected)
    assert len(panel) == rows
    assert _sums(panel) == [80_649, 29_417, 2_271]
    assert (panel["month_id"].min(), panel["month_id"].max()) == (433, 479)
    assert all(panel[c].dtype == np.int64 for c in panel.columns)
    validate_panel(panel, level, source="syria")


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("level", "name", "rows"),
    [("cm", "candidate_2023_10_cm", 48), ("pgm", "candidate_2023_10_pgm", 2827)],
)
def test_candidate_reproduces_derived_tables(
    candidate_events: pd.DataFrame, samples: Path, level: str, name: str, rows: int
) -> None:
    # the derived candidate tables cover the reference month only (Oct 2023 = 526)
    panel = aggregate_events(candidate_events, level, first_month=526, last_month=526)
    expected = _derived(samples, name, list(panel.columns))
    pd.testing.assert_frame_equal(panel, expected)
    assert len(panel) == rows
    assert _sums(panel) == [10_494, 963, 1_055]
    validate_panel(panel, level, source="candidate")


@pytest.mark.shared_data
def test_candidate_full_span_counts_late_additions(candidate_events: pd.DataFrame) -> None:
    panel = aggregate_events(candidate_events, "cm")
    assert sum(_sums(panel)) == 12_603  # every event, incl. the 33 starting before Oct 2023
    assert panel["month_id"].min() < 526
    assert panel.groupby("month_id").size().nunique() == 1  # every month x every country
    validate_panel(panel, "cm", source="candidate")


@pytest.mark.shared_data
def test_csv_event_file_gives_same_panel(syria_events: pd.DataFrame, tmp_path: Path) -> None:
    """UCDP publishes CSV: dates as text, ints without nullable dtypes."""
    path = tmp_path / "ged_syria.csv"
    syria_events.assign(date_start=syria_events["date_start"].dt.strftime("%Y-%m-%d")).to_csv(
        path, index=False
    )
    from_csv = read_events(path)
    for level in ("cm", "pgm"):
        pd.testing.assert_frame_equal(
            aggregate_events(from_csv, level), aggregate_events(syria_events, level)
        )


@pytest.mark.shared_data
def test_countries_table_maps_gw_to_views_ids(
    candidate_events: pd.DataFrame, syria_events: pd.DataFrame, views_countries: pd.DataFrame
) -> None:
    by_gw = aggregate_events(candidate_events, "cm", first_month=526, last_month=526)
    by_views = aggregate_events(
        candidate_events, "cm", countries=views_countries, first_month=526, last_month=526
    )
    validate_panel(by_views, "cm", source="candidate")
    assert len(by_views) == len(by_gw) == 48
    assert _sums(by_views) == _sums(by_gw)
    current = views_countries[views_countries["last_month"] >= 526]
    gw_to_views = dict(zip(current["gwcode"], current["country_id"], strict=True))
    assert gw_to_views[652] == 220 and gw_to_views[365] == 65  # Syria, Russia
    expected = by_gw.assign(country_id=by_gw["country_id"].map(gw_to_views))
    expected = expected.sort_values(["month_id", "country_id"], ignore_index=True)
    pd.testing.assert_frame_equal(by_views, expected)

    syria = aggregate_events(syria_events, "cm", countries=views_countries)
    assert set(syria["country_id"]) == {220}
    assert _sums(syria) == [80_649, 29_417, 2_271]


@pytest.mark.shared_data
def test_countries_table_errors(
    candidate_events: pd.DataFrame, views_countries: pd.DataFrame
) -> None:
    plain = views_countries[["gwcode", "country_id"]]
    with pytest.raises(PanelError, match="several ids") as err:
        aggregate_events(candidate_events, "cm", countries=plain, source="cand.csv")
    assert "gwcode 625 -> country_id 59, 245" in str(err.value)
    assert "first_month" in str(err.value)

    partial = views_countries[~views_countries["gwcode"].isin([652, 770])]
    with pytest.raises(PanelError, match="countries table") as err:
        aggregate_events(candidate_events, "cm", countries=partial, source="cand.csv")
    message = str(err.value)
    assert "cand.csv" in message and "country_id" in message
    assert "652" in message and "770" in message and "add rows" in message

    with pytest.raises(PanelError, match="'gwcode'"):
        aggregate_events(candidate_events, "cm", countries=plain.rename(columns={"gwcode": "gw"}))


@pytest.mark.shared_data
def test_month_span_extends_and_limits(syria_events: pd.DataFrame) -> None:
    wide = aggregate_events(syria_events, "cm", first_month=421, last_month=480)
    assert (wide["month_id"].min(), wide["month_id"].max(), len(wide)) == (421, 480, 60)
    assert _sums(wide) == [80_649, 29_417, 2_271]
    assert (wide.loc[wide["month_id"] < 433, COUNTS] == 0).all().all()
    validate_panel(wide, "cm", source="syria")

    year = aggregate_events(syria_events, "pgm", first_month=445, last_month=456)  # 2017
    assert year["ged_sb"].sum() == 21_243  # README cross-check: Syria sb deaths in 2017

    with pytest.raises(PanelError, match=r"no event starts within months 400\.\.410"):
        aggregate_events(syria_events, "cm", first_month=400, last_month=410)
    with pytest.raises(PanelError, match="first_month"):
        aggregate_events(syria_events, "cm", first_month=470, last_month=460)
    with pytest.raises(PanelError, match="last_month"):
        aggregate_events(syria_events, "cm", last_month=900, today=TODAY)


# --------------------------------------------------------------------------- synthetic


def _events(**overrides: object) -> pd.DataFrame:
    base = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "type_of_violence": [1, 2, 3, 1],
            "best": [5, 3, 2, 7],
            "date_start": ["2020-01-15", "2020-01-20", "2020-03-01", "2020-03-31"],
            "country_id": [652, 652, 645, 652],
            "latitude": [35.2, 35.2, 33.3, 89.9],
            "longitude": [38.1, 38.1, 44.4, -179.9],
        }
    )
    for column, value in overrides.items():
        base[column] = value
    return base


def test_pgm_neighbours_wrap_longitude_not_latitude() -> None:
    panel = aggregate_events(_events(), "pgm", today=TODAY)
    months = sorted(panel["month_id"].unique())
    assert months == [481, 482, 483]  # Jan..Mar 2020, Feb is all zeros
    cells = panel.loc[panel["month_id"] == 481, "priogrid_gid"].to_numpy()
    polar = int(gid_from_latlon(89.9, -179.9))
    assert polar == gid_from_rowcol(360, 1)
    assert gid_from_rowcol(360, 720) in cells and gid_from_rowcol(359, 720) in cells
    # 2 ordinary cells with 9 each + the polar cell with 6 (3 rows lost above the pole)
    assert len(cells) == 9 + 9 + 6
    assert panel.groupby("month_id").size().nunique() == 1
    mar = panel[panel["month_id"] == 483].set_index("priogrid_gid")
    assert mar.loc[polar, "ged_sb"] == 7
    assert _sums(panel) == [12, 3, 2]
    validate_panel(panel, "pgm", source="synthetic", today=TODAY)


def test_cm_sums_by_type_and_start_month() -> None:
    panel = aggregate_events(_events(), "cm", today=TODAY)
    assert list(panel.columns) == ["month_id", "country_id", *COUNTS]
    assert len(panel) == 3 * 2
    jan = panel[(panel["month_id"] == 481) & (panel["country_id"] == 652)]
    assert jan[COUNTS].to_numpy().tolist() == [[5, 3, 0]]
    assert panel.loc[panel["country_id"] == 645, "ged_os"].tolist() == [0, 0, 2]


def test_countries_periods_choose_successor_and_limit_skeleton() -> None:
    countries = pd.DataFrame(
        {
            "gwcode": [652, 652, 645, None],
            "country_id": [10, 11, 20, 99],
            "first_month": [None, 482, None, None],
            "last_month": [482, None, None, None],
        }
    )
    panel = aggregate_events(_events(), "cm", countries=countries, today=TODAY)
    rows = {(m, c): s for m, c, s in panel[["month_id", "country_id", "ged_sb"]].to_numpy()}
    assert rows[(481, 10)] == 5 and rows[(483, 11)] == 7
    assert (483, 10) not in rows  # id 10 ends in 482
    assert (481, 11) not in rows  # id 11 starts in 482
    assert (482, 10) in rows and (482, 11) in rows  # both exist in the transition month
    assert 99 not in set(panel["country_id"])
    validate_panel(panel, "cm", source="synthetic", today=TODAY)


BAD_EVENTS = {
    "missing column": (lambda df: df.drop(columns="best"), "best", None),
    "type 4": (lambda df: df.assign(type_of_violence=[1, 2, 4, 1]), "type_of_violence", 3),
    "type text": (
        lambda df: df.assign(type_of_violence=["1", "x", "3", "1"]),
        "type_of_violence",
        2,
    ),
    "negative best": (lambda df: df.assign(best=[5, -3, 2, 7]), "best", 2),
    "text best": (lambda df: df.assign(best=["5", "3", "many", "7"]), "best", 3),
    "fractional best": (lambda df: df.assign(best=[5, 3.5, 2, 7]), "best", 2),
    "missing best": (lambda df: df.assign(best=[5, None, 2, 7]), "best", 2),
    "bad date": (
        lambda df: df.assign(date_start=["2020-01-15", "2020-13-45", "2020-03-01", "2020-03-31"]),
        "date_start",
        2,
    ),
    "missing date": (
        lambda df: df.assign(date_start=["2020-01-15", None, "2020-03-01", "2020-03-31"]),
        "date_start",
        2,
    ),
    "future date": (
        lambda df: df.assign(date_start=["2020-01-15", "2020-01-20", "2020-03-01", "2031-03-31"]),
        "date_start",
        4,
    ),
    "latitude out of range": (
        lambda df: df.assign(latitude=[35.2, 95.0, 33.3, 89.9]),
        "latitude",
        2,
    ),
    "longitude out of range": (
        lambda df: df.assign(longitude=[38.1, 38.1, -200.0, 1.0]),
        "longitude",
        3,
    ),
    "missing latitude": (lambda df: df.assign(latitude=[35.2, None, 33.3, 89.9]), "latitude", 2),
    "missing country": (lambda df: df.assign(country_id=[652, None, 645, 652]), "country_id", 2),
    "text country": (lambda df: df.assign(country_id=[652, 652, "Iraq", 652]), "country_id", 3),
    "priogrid mismatch": (
        lambda df: df.assign(
            priogrid_gid=[*gid_from_latlon(df["latitude"][:3], df["longitude"][:3]), 12345]
        ),
        "priogrid_gid",
        4,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_EVENTS))
def test_malformed_event_files_are_refused(case: str, tmp_path: Path) -> None:
    change, column, row = BAD_EVENTS[case]
    path = tmp_path / "events.csv"
    change(_events()).to_csv(path, index=False)
    with pytest.raises(PanelError) as err:
        read_events(path, today=TODAY)
    message = str(err.value)
    assert str(path) in message
    assert f"'{column}'" in message
    assert "Fix:" in message
    if row is not None:
        assert f"data row {row}:" in message
        assert message.count("data row ") == 2  # the header line + exactly one offending row


def test_priogrid_mismatch_shows_computed_cell(tmp_path: Path) -> None:
    df = _events(priogrid_gid=[1, 2, 3, 4])
    with pytest.raises(PanelError, match="4 rows disagree") as err:
        validate_events(df, source="ged.csv", today=TODAY)
    assert f"computed_priogrid_gid={int(gid_from_latlon(35.2, 38.1))}" in str(err.value)


def test_missing_priogrid_values_are_computed() -> None:
    df = _events(priogrid_gid=[None, None, None, None])
    out = validate_events(df, today=TODAY)
    assert out["priogrid_gid"].tolist() == gid_from_latlon(df["latitude"], df["longitude"]).tolist()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"type_of_violence,best,date_start,country_id,latitude,longitude\n", "no events"),
    ],
)
def test_empty_event_files_are_refused(content: bytes, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "ged.csv"
    path.write_bytes(content)
    with pytest.raises(PanelError, match=expected) as err:
        read_events(path, today=TODAY)
    assert str(path) in str(err.value)


def test_parquet_nullable_dtypes_and_datetimes(tmp_path: Path) -> None:
    df = _events()
    df["best"] = df["best"].astype("Int64")
    df["date_start"] = pd.to_datetime(df["date_start"])
    path = tmp_path / "ged.parquet"
    df.to_parquet(path)
    out = read_events(path, today=TODAY)
    assert out["best"].dtype == np.int64
    pd.testing.assert_frame_equal(
        aggregate_events(out, "cm", today=TODAY), aggregate_events(_events(), "cm", today=TODAY)
    )
