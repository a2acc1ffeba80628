"""UCDP GED event files -> country-month (cm) and PRIO-GRID-month (pgm) count panels.

Events are counted in the month of ``date_start`` and summed by ``type_of_violence``
(1 -> ``ged_sb``, 2 -> ``ged_ns``, 3 -> ``ged_os``, UCDP "best" estimate). The skeleton is
zero-filled the way the reference tables in ``shared/data/ucdp_ged_event_samples/derived`` were
built: cm = every month of the span x every country with an event; pgm = every month of the
span x (cells with an event in the span + their 8 queen neighbours). A zero there means
"UCDP recorded no deaths", which is why the skeleton is explicit rather than left to joins.

Everything is vectorised: a global GED file has ~350,000 events.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from ewspipe.errors import PanelError
from ewspipe.panel.columns import integers, numbers, refuse_text_storage
from ewspipe.panel.limits import InputLimits
from ewspipe.panel.messages import excerpt, name_list
from ewspipe.panel.messages import row_error as _fail
from ewspipe.panel.months import current_month_id, month_id_from_dates, month_label
from ewspipe.panel.priogrid import gid_from_latlon, queen_neighbours
from ewspipe.panel.schema import TIME_COLUMN, Level
from ewspipe.panel.sources.table import read_table

__all__ = [
    "COUNT_COLUMNS",
    "EVENT_COLUMNS",
    "TYPE_COLUMNS",
    "aggregate_events",
    "drop_duplicate_events",
    "load_events",
    "read_events",
    "validate_events",
]

EVENT_COLUMNS = ("type_of_violence", "best", "date_start", "country_id", "latitude", "longitude")
GID = "priogrid_gid"
TYPE_COLUMNS = {1: "ged_sb", 2: "ged_ns", 3: "ged_os"}
COUNT_COLUMNS = tuple(TYPE_COLUMNS.values())
_COUNTRIES = "countries table"
_OPEN_LOW = np.iinfo(np.int64).min
_OPEN_HIGH = np.iinfo(np.int64).max
_SHOW_IDS = 10
DUPLICATE_POLICIES = ("refuse", "drop")

IntArray = npt.NDArray[np.int64]


# --------------------------------------------------------------------------- validation


def _show(df: pd.DataFrame, column: str) -> list[str]:
    """Columns printed with offending rows: the UCDP event id helps find the row upstream."""
    return ["id", column] if "id" in df.columns and column != "id" else [column]


def _numbers(df: pd.DataFrame, column: str, source: str, fix_text: str) -> npt.NDArray[np.float64]:
    return numbers(df, column, source, fix=fix_text, show=_show(df, column))


def _integers(
    df: pd.DataFrame, column: str, source: str, fix_text: str, *, allow_missing: bool = False
) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    return integers(df, column, source, fix=fix_text, show=_show(df, column),
                    allow_missing=allow_missing)


def _check_rows(
    df: pd.DataFrame, source: str, column: str, bad: npt.NDArray[np.bool_], problem: str,
    fix_text: str,
) -> None:
    """Raise naming the rows where ``bad`` holds: "<count> rows <problem>", then the fix."""
    if bad.any():
        raise _fail(source, column, f"{int(bad.sum())} rows {problem}", fix_text, df, bad,
                    _show(df, column))


def _dates(df: pd.DataFrame, column: str, source: str, today: date) -> pd.Series:
    """Naive UTC datetimes; missing, unparseable and future dates are errors naming the rows."""
    col = df[column]
    fix_text = "write dates as YYYY-MM-DD (UCDP's own format), one per event"
    if pd.api.types.is_datetime64_any_dtype(col):
        parsed = pd.to_datetime(col, utc=True)
    elif pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        raise _fail(source, column, f"holds numbers ({col.dtype}), expected dates", fix_text)
    else:
        parsed = pd.to_datetime(col, errors="coerce", format="ISO8601", utc=True)
    parsed = parsed.dt.tz_localize(None)
    _check_rows(df, source, column, col.isna().to_numpy(), "have no date", fix_text)
    _check_rows(df, source, column, parsed.isna().to_numpy(), "cannot be read as a date",
                fix_text)
    early = (parsed < pd.Timestamp(1980, 1, 1)).to_numpy()
    _check_rows(df, source, column, early, "are before 1980-01-01, the first month of the "
                "month_id calendar (month_id 1)", "check the date format (two-digit years?) "
                "or drop these rows")
    future = (parsed >= pd.Timestamp(today) + pd.Timedelta(days=1)).to_numpy()
    _check_rows(df, source, column, future, f"start after today ({today.isoformat()})",
                "events cannot start in the future: check the date format (day/month swapped?) "
                "or drop these rows")
    return parsed


def _check_unique_ids(df: pd.DataFrame, source: str) -> None:
    """A repeated event id would be counted twice: refuse, naming the ids."""
    if "id" not in df.columns:
        return
    ids = df["id"]
    repeated = ids.duplicated(keep=False).to_numpy() & ids.notna().to_numpy()
    if repeated.any():
        names = pd.unique(ids[repeated])
        shown = ", ".join(excerpt(str(v), 40) for v in names[:_SHOW_IDS])
        more = f" and {len(names) - _SHOW_IDS} more" if len(names) > _SHOW_IDS else ""
        raise _fail(
            source, "id",
            f"{len(names)} event ids appear more than once ({shown}{more}); their deaths "
            "would be counted twice",
            "remove the repeated rows at the source, or pass --duplicates drop to keep the "
            "first row of each id (the dropped ids are listed in the snapshot's report)",
            df, repeated, _show(df, "best"))


def drop_duplicate_events(events: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The events with only the first row of each repeated ``id``; plus the repeated ids."""
    if "id" not in events.columns:
        return events, []
    ids = events["id"]
    repeated = ids.duplicated(keep="first") & ids.notna()
    if not repeated.any():
        return events, []
    dropped = [str(v) for v in pd.unique(ids[repeated])]
    return events.loc[~repeated.to_numpy()].reset_index(drop=True), dropped


def _check_end(df: pd.DataFrame, start: pd.Series, source: str) -> None:
    """date_end, where given, is a date not before date_start."""
    col = df["date_end"]
    fix_text = "write dates as YYYY-MM-DD (UCDP's own format), one per event"
    if pd.api.types.is_numeric_dtype(col) and not col.isna().all():
        raise _fail(source, "date_end", f"holds numbers ({col.dtype}), expected dates", fix_text)
    if pd.api.types.is_datetime64_any_dtype(col):
        end = pd.to_datetime(col, utc=True)
    else:
        end = pd.to_datetime(col.astype(object), errors="coerce", format="ISO8601", utc=True)
    end = end.dt.tz_localize(None)
    _check_rows(df, source, "date_end", (end.isna() & col.notna()).to_numpy(),
                "cannot be read as a date", fix_text)
    backwards = (end.notna() & (end < start)).to_numpy()
    if backwards.any():
        raise _fail(source, "date_end", f"{int(backwards.sum())} events end before they start",
                    "correct date_start or date_end of these events at the source (swapped?)",
                    df, backwards, [*_show(df, "date_start"), "date_end"])


def _coordinates(
    df: pd.DataFrame, column: str, limit: float, source: str
) -> npt.NDArray[np.float64]:
    fix_text = f"{column} is in decimal degrees within [-{limit:g}, {limit:g}] (WGS84)"
    arr = _numbers(df, column, source, fix_text)
    _check_rows(df, source, column, np.isnan(arr), "have no value",
                f"{fix_text}; every GED event has coordinates")
    hint = ""
    if column == "latitude" and "longitude" in df.columns:
        hint = " (latitude and longitude swapped?)"
    _check_rows(df, source, column, ~np.isfinite(arr) | (arr < -limit) | (arr > limit),
                f"are outside [-{limit:g}, {limit:g}]{hint}", fix_text)
    return arr


def validate_events(
    events: pd.DataFrame,
    *,
    source: str = "events",
    today: date | None = None,
    max_best: int | None = None,
) -> pd.DataFrame:
    """Check a GED event table and return its normalised event columns.

    Args:
        events: the table as read (any extra GED columns are allowed and ignored).
        source: how to name the input in messages (usually the file path).
        today: the date after which an event start is "in the future" (default: today, UTC).
        max_best: the plausibility bound on one event's deaths (``[data]
            max_deaths_per_row``); None = no bound.

    Returns:
        A new DataFrame with ``id`` (when present), ``type_of_violence``, ``best``,
        ``country_id`` (int64), ``date_start`` (datetime64, naive UTC), ``latitude``,
        ``longitude`` (float64) and ``priogrid_gid`` (int64, computed from the coordinates).

    Raises:
        PanelError: naming the column, the first offending rows (1-based data rows) and a fix.
    """
    today = today or datetime.now(UTC).date()
    df = events.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    twice = [c for c in (*EVENT_COLUMNS, GID, "id") if list(df.columns).count(c) > 1]
    if twice:
        raise _fail(
            source,
            twice[0],
            "the column name appears more than once",
            "rename or drop the duplicate column",
        )
    absent = [c for c in EVENT_COLUMNS if c not in df.columns]
    if absent:
        raise _fail(
            source,
            absent[0],
            f"required column is missing (missing: {', '.join(absent)}; "
            f"found: {name_list(df.columns) or 'no columns'})",
            "use a UCDP GED or Candidate event file (CSV or Parquet) with the UCDP column names "
            f"{', '.join(EVENT_COLUMNS)}",
        )
    if len(df) == 0:
        raise _fail(
            source,
            None,
            "the file has a header but no events",
            "check the download or export finished; an event file is never empty",
        )

    tov, _ = _integers(
        df,
        "type_of_violence",
        source,
        "type_of_violence is 1 (state-based), 2 (non-state) or 3 (one-sided)",
    )
    _check_rows(df, source, "type_of_violence", ~np.isin(tov, list(TYPE_COLUMNS)),
                "have a type other than 1, 2 or 3",
                "type_of_violence is 1 (state-based), 2 (non-state) or 3 (one-sided); "
                "correct or drop these rows")

    best_fix = "best is UCDP's best estimate of deaths: a non-negative integer for every event"
    refuse_text_storage(df, "best", source)
    best, _ = _integers(df, "best", source, best_fix)
    _check_rows(df, source, "best", best < 0, "have negative deaths", best_fix)
    if max_best is not None:
        _check_rows(df, source, "best", best > max_best,
                    f"exceed the plausibility bound of {max_best:,} deaths in one event",
                    "check these events at the source (a typo or a code instead of deaths?); "
                    "if they are real, raise [data] max_deaths_per_row "
                    f"(now {max_best:,}) in ewspipe.toml")
    _check_unique_ids(df, source)

    gw_fix = "country_id is the Gleditsch-Ward code of the event's country (e.g. 652 = Syria)"
    country, _ = _integers(df, "country_id", source, gw_fix)
    _check_rows(df, source, "country_id", country < 1, "have a code below 1", gw_fix)

    start = _dates(df, "date_start", source, today)
    if "date_end" in df.columns:
        _check_end(df, start, source)
    lat = _coordinates(df, "latitude", 90.0, source)
    lon = _coordinates(df, "longitude", 180.0, source)
    gid = gid_from_latlon(lat, lon)

    if GID in df.columns:
        given, missing = _integers(
            df,
            GID,
            source,
            "priogrid_gid is UCDP's PRIO-GRID cell id (an integer)",
            allow_missing=True,
        )
        differ = ~missing & (given != gid)
        if differ.any():
            shown = df.assign(computed_priogrid_gid=gid)
            raise _fail(
                source,
                GID,
                f"{int(differ.sum())} rows disagree with the cell computed from latitude/"
                "longitude (row = floor((lat + 90) / 0.5) + 1, col = floor((lon + 180) / 0.5) "
                "+ 1, gid = (row - 1) * 720 + col)",
                "fix the coordinates or the priogrid_gid of these rows, or drop the "
                "priogrid_gid column to use the computed cells",
                shown,
                differ,
                [*_show(df, GID), "latitude", "longitude", "computed_priogrid_gid"],
            )

    out = pd.DataFrame(
        {
            "type_of_violence": tov,
            "best": best,
            "country_id": country,
            "date_start": start.to_numpy(),
            "latitude": lat,
            "longitude": lon,
            GID: gid,
        }
    )
    if "id" in df.columns:
        out.insert(0, "id", df["id"].to_numpy())
    return out


def read_events(path: Path | str, *, today: date | None = None,
                limits: InputLimits | None = None) -> pd.DataFrame:
    """Read a UCDP GED / Candidate event file (CSV or Parquet) and validate it.

    Returns the normalised event columns described in :func:`validate_events`.

    Raises:
        PanelError: unreadable file, or a failed check naming the file, column and rows.
    """
    return load_events(path, today=today, limits=limits)[0]


def load_events(
    path: Path | str,
    *,
    today: date | None = None,
    limits: InputLimits | None = None,
    duplicates: str = "refuse",
) -> tuple[pd.DataFrame, list[str]]:
    """:func:`read_events` within ``limits``, plus the ids dropped because they repeat an
    earlier row (only with ``duplicates="drop"``; the default ``"refuse"`` names them)."""
    path = Path(path)
    limits = limits or InputLimits()
    if duplicates not in DUPLICATE_POLICIES:
        raise PanelError(f"unknown duplicates policy {duplicates!r}; use 'refuse' or 'drop'",
                         parameter="duplicates")
    events = read_table(path, limits=limits)
    dropped: list[str] = []
    if duplicates == "drop":
        events, dropped = drop_duplicate_events(events)
    return validate_events(events, source=str(path), today=today,
                           max_best=limits.max_deaths_per_row), dropped


# --------------------------------------------------------------------------- countries


def _countries_table(countries: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """Normalised (gwcode, country_id, first_month, last_month) rows; bool = has periods."""
    name = str(countries.attrs.get("source", _COUNTRIES))
    table = countries.reset_index(drop=True)
    table.columns = [str(c) for c in table.columns]
    fix_cols = (
        "give a table with columns gwcode (Gleditsch-Ward code) and country_id "
        "(your id), optionally first_month/last_month (month_ids when the id applies)"
    )
    for col in ("gwcode", "country_id"):
        if col not in table.columns:
            raise _fail(
                name,
                col,
                f"required column is missing (found: {name_list(table.columns)})",
                fix_cols,
            )
    period = [c for c in ("first_month", "last_month") if c in table.columns]
    if len(period) == 1:
        other = "last_month" if period[0] == "first_month" else "first_month"
        raise _fail(
            name,
            other,
            f"'{period[0]}' is given but '{other}' is not",
            "give both first_month and last_month (empty = open-ended), or neither",
        )
    gw, no_gw = _integers(table, "gwcode", name, fix_cols, allow_missing=True)
    cid_fix = "every row with a gwcode needs an integer country_id"
    cid, no_cid = _integers(table, "country_id", name, cid_fix, allow_missing=True)
    impossible = ~no_cid & (cid < 1)
    if impossible.any():
        raise _fail(name, "country_id", f"{int(impossible.sum())} rows have a country_id below 1",
                    "country ids are positive integers (VIEWS ids start at 1)", table, impossible,
                    ["gwcode", "country_id"])
    orphan = ~no_gw & no_cid
    if orphan.any():
        raise _fail(
            name,
            "country_id",
            f"{int(orphan.sum())} rows have a gwcode but no country_id",
            cid_fix,
            table,
            orphan,
            ["gwcode", "country_id"],
        )
    keep = ~no_gw  # ids without a GW code (e.g. VIEWS ids with no metadata) cannot match
    first = np.full(len(table), _OPEN_LOW, dtype=np.int64)
    last = np.full(len(table), _OPEN_HIGH, dtype=np.int64)
    if period:
        given, missing = _integers(table, "first_month", name, fix_cols, allow_missing=True)
        first = np.where(missing, _OPEN_LOW, given)
        given, missing = _integers(table, "last_month", name, fix_cols, allow_missing=True)
        last = np.where(missing, _OPEN_HIGH, given)
        backwards = keep & (first > last)
        if backwards.any():
            raise _fail(
                name,
                "first_month",
                f"{int(backwards.sum())} rows end before they start",
                "first_month must be <= last_month",
                table,
                backwards,
                ["gwcode", "country_id", "first_month", "last_month"],
            )
    out = pd.DataFrame(
        {
            "gwcode": gw[keep],
            "country_id": cid[keep],
            "first_month": first[keep],
            "last_month": last[keep],
        }
    )
    return out.drop_duplicates(ignore_index=True), bool(period)


def _map_countries(
    gw: IntArray, month: IntArray, countries: pd.DataFrame, source: str
) -> tuple[IntArray, pd.DataFrame | None]:
    """Each event's country id from the table; plus per-id [first, last] when periods are given.

    A GW code can name several ids over time (VIEWS re-keys Sudan in 2011, Yemen in 1990 ...).
    With periods, the row covering the event month wins; where two cover it (VIEWS lists both
    ids in the transition month) the successor (latest first_month) wins, as in VIEWS' own
    fatalities002 table.
    """
    table, has_period = _countries_table(countries)
    name = str(countries.attrs.get("source", _COUNTRIES))
    pairs = pd.DataFrame({"gwcode": gw, TIME_COLUMN: month}).drop_duplicates(ignore_index=True)
    cand = pairs.merge(table, on="gwcode", how="inner")
    cand = cand[
        (cand["first_month"] <= cand[TIME_COLUMN]) & (cand[TIME_COLUMN] <= cand["last_month"])
    ]
    cand = cand.sort_values(["gwcode", TIME_COLUMN, "first_month", "country_id"])
    top = cand.groupby(["gwcode", TIME_COLUMN])["first_month"].transform("max")
    winners = cand[cand["first_month"] == top]
    n_ids = winners.groupby(["gwcode", TIME_COLUMN])["country_id"].transform("nunique")
    ambiguous = winners[n_ids > 1]
    if len(ambiguous):
        codes = ambiguous.groupby("gwcode")["country_id"].unique()
        listed = "; ".join(
            f"gwcode {g} -> country_id {', '.join(map(str, sorted(ids)))}"
            for g, ids in codes.head(10).items()
        )
        raise PanelError(
            f"{source}: column 'country_id': {len(codes)} GW codes of these events map to "
            f"several ids in {name}: {listed}\n"
            "  Fix: keep one row per gwcode (the id your panel uses), or add first_month and "
            "last_month columns saying when each id applies (for VIEWS' views_countries.parquet "
            "rename fat002_first_month / fat002_last_month to first_month / last_month)"
        )
    resolved = winners.drop_duplicates(["gwcode", TIME_COLUMN])[
        ["gwcode", TIME_COLUMN, "country_id"]
    ]
    mapped = pd.DataFrame({"gwcode": gw, TIME_COLUMN: month}).merge(
        resolved, on=["gwcode", TIME_COLUMN], how="left", validate="many_to_one"
    )
    unmapped = mapped["country_id"].isna().to_numpy()
    if unmapped.any():
        miss = mapped.loc[unmapped].groupby("gwcode")[TIME_COLUMN].agg(["size", "min", "max"])
        known = set(table["gwcode"].tolist())
        lines = []
        for g, row in miss.head(20).iterrows():
            why = "no row covers these months" if g in known else "not in the table"
            lines.append(
                f"    gwcode {g}: {row['size']} events, months {row['min']}.."
                f"{row['max']} ({month_label(int(row['min']))}.."
                f"{month_label(int(row['max']))}): {why}"
            )
        if len(miss) > 20:
            lines.append(f"    ... and {len(miss) - 20} more codes")
        raise PanelError(
            f"{source}: column 'country_id': {int(unmapped.sum())} events have a Gleditsch-Ward "
            f"code {name} does not map ({len(miss)} codes: "
            f"{', '.join(str(g) for g in miss.index[:20])})\n"
            + "\n".join(lines)
            + "\n  Fix: add rows (gwcode, country_id) for these codes to the countries table, "
            "or widen first_month/last_month of the rows that should cover these months"
        )
    ids = mapped["country_id"].to_numpy(dtype=np.int64)
    windows = None
    if has_period:
        windows = table.groupby("country_id").agg(
            first=("first_month", "min"), last=("last_month", "max")
        )
    return ids, windows


# --------------------------------------------------------------------------- aggregation


def _span(
    month: IntArray, first_month: int | None, last_month: int | None, today: date | None
) -> tuple[int, int]:
    lo = int(month.min()) if first_month is None else int(first_month)
    hi = int(month.max()) if last_month is None else int(last_month)
    if lo < 1:
        raise PanelError(
            f"option first_month: {lo} is before month_id 1 (Jan 1980); "
            "month_id = (year - 1980) * 12 + month"
        )
    if lo > hi:
        raise PanelError(
            f"options first_month/last_month: the span {lo}..{hi} is empty "
            f"(first_month {lo} = {month_label(lo)} is after last_month {hi} = "
            f"{month_label(hi)}); swap or correct them"
        )
    limit = current_month_id(today)
    if hi > limit:
        raise PanelError(
            f"option last_month: {hi} ({month_label(hi)}) is in the future "
            f"(current month {limit} = {month_label(limit)}); choose <= {limit}"
        )
    return lo, hi


def aggregate_events(
    events: pd.DataFrame,
    level: Level | str,
    *,
    countries: pd.DataFrame | None = None,
    first_month: int | None = None,
    last_month: int | None = None,
    source: str = "events",
    today: date | None = None,
) -> pd.DataFrame:
    """Sum GED events into a zero-filled cm or pgm count panel.

    Args:
        events: a GED event table (validated here; :func:`read_events` output is fine).
        level: ``cm`` (unit ``country_id``) or ``pgm`` (unit ``priogrid_gid``).
        countries: cm only: table with ``gwcode`` and ``country_id`` (and optionally
            ``first_month``/``last_month``) mapping the events' Gleditsch-Ward codes to your
            country ids; without it ``country_id`` is the GW code. Ignored for pgm.
        first_month, last_month: the skeleton's month span (inclusive); events starting
            outside it are dropped. Default: the first and last event month.
        source: how to name the input in messages.
        today: the date defining "future" (default: today, UTC).

    Returns:
        ``month_id``, unit, ``ged_sb``, ``ged_ns``, ``ged_os`` (all int64), one row per
        (month, unit) of the skeleton, sorted by (month_id, unit). With a countries table
        that has periods, an id only has rows within its [first_month, last_month].

    Raises:
        PanelError: invalid events, unmapped or ambiguous GW codes, a bad or empty span.
    """
    level = level if isinstance(level, Level) else Level.parse(str(level))
    ev = validate_events(events, source=source, today=today)
    month = month_id_from_dates(ev["date_start"].to_numpy())
    lo, hi = _span(month, first_month, last_month, today)
    inside = (month >= lo) & (month <= hi)
    if not inside.any():
        raise PanelError(
            f"{source}: no event starts within months {lo}..{hi} ({month_label(lo)}.."
            f"{month_label(hi)}); the events span {int(month.min())}..{int(month.max())}\n"
            "  Fix: choose first_month/last_month overlapping the events"
        )
    ev = ev.loc[inside]
    month = month[inside]
    tov = ev["type_of_violence"].to_numpy(dtype=np.int64)
    best = ev["best"].to_numpy(dtype=np.int64)

    windows: pd.DataFrame | None = None
    if level is Level.CM:
        unit = ev["country_id"].to_numpy(dtype=np.int64)
        if countries is not None:
            unit, windows = _map_countries(unit, month, countries, source)
        units = np.unique(unit)
    else:
        unit = ev[GID].to_numpy(dtype=np.int64)
        cells = np.unique(unit)
        _, neighbours = queen_neighbours(cells)
        units = np.union1d(cells, neighbours)

    months = np.arange(lo, hi + 1, dtype=np.int64)
    n_units = len(units)
    # skeleton rows are month-major, so position = month offset * n_units + unit rank
    position = (month - lo) * n_units + np.searchsorted(units, unit)
    frame = pd.DataFrame(
        {TIME_COLUMN: np.repeat(months, n_units), level.unit_column: np.tile(units, len(months))}
    )
    for code, column in TYPE_COLUMNS.items():
        sums = np.zeros(len(frame), dtype=np.int64)
        np.add.at(sums, position, np.where(tov == code, best, 0))
        frame[column] = sums

    if windows is not None:
        bounds = windows.reindex(units)
        first = np.tile(bounds["first"].to_numpy(dtype=np.int64), len(months))
        last = np.tile(bounds["last"].to_numpy(dtype=np.int64), len(months))
        m = frame[TIME_COLUMN].to_numpy()
        frame = frame[(m >= first) & (m <= last)].reset_index(drop=True)
    return frame
