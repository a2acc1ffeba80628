"""Downloading GED releases: served from a local HTTP server, never from the internet."""

from __future__ import annotations

import hashlib
import re
import socket
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from ewspipe.errors import DownloadError
from ewspipe.panel.schema import validate_panel
from ewspipe.panel.sources.ged import aggregate_events, read_events
from ewspipe.panel.sources.ucdp import DEFAULT_GED_URL, download, extract_events, ged_url

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 5.0


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# --------------------------------------------------------------------------- ged_url


@pytest.mark.parametrize(
    ("version", "template", "url"),
    [
        ("24.1", DEFAULT_GED_URL, "https://ucdp.uu.se/downloads/ged/ged241-csv.zip"),
        (
            "24.0.10",
            "https://ucdp.uu.se/downloads/candidateged/GEDEvent_v{underscored}.csv",
            "https://ucdp.uu.se/downloads/candidateged/GEDEvent_v24_0_10.csv",
        ),
        (
            "23.1",
            "http://mirror.example/{version}/ged{compact}.zip",
            "http://mirror.example/23.1/ged231.zip",
        ),
    ],
)
def test_ged_url_fills_placeholders(version: str, template: str, url: str) -> None:
    assert ged_url(version, template) == url


@pytest.mark.parametrize("version", ["24", "v24.1", "2024.1", "24.1.", "24,1", "", "24.1.2.3"])
def test_ged_url_rejects_bad_versions(version: str) -> None:
    with pytest.raises(DownloadError, match="is not a UCDP version") as err:
        ged_url(version, DEFAULT_GED_URL)
    assert err.value.parameter == "version"  # the CLI names --version
    assert "24.1" in str(err.value)  # shows a valid example


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("https://ucdp.uu.se/ged{year}.zip", "unknown placeholder"),
        ("https://ucdp.uu.se/ged{compact.zip", "not a valid template"),
        ("ftp://ucdp.uu.se/ged{compact}.zip", "not an http"),
        ("ged{compact}.zip", "not an http"),
    ],
)
def test_ged_url_rejects_bad_templates(template: str, expected: str) -> None:
    with pytest.raises(DownloadError, match=expected):
        ged_url("24.1", template)


# --------------------------------------------------------------------------- download


@pytest.mark.shared_data
def test_download_extract_aggregate(
    served: tuple[str, Path], shared_data: Path, tmp_path: Path
) -> None:
    base, root = served
    events = pd.read_parquet(
        shared_data / "ucdp_ged_event_samples" / "events" / "ged_syria_2016_2019_events.parquet"
    ).iloc[:300]
    csv_path = tmp_path / "ged991.csv"
    events.to_csv(csv_path, index=False)
    with zipfile.ZipFile(root / "ged991-csv.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(csv_path, "ged991.csv")
        archive.writestr("README.txt", "not the data")
    zipped = (root / "ged991-csv.zip").read_bytes()

    url = ged_url("99.1", base + "/ged{compact}-csv.zip")
    dest = tmp_path / "downloads"
    got = download(url, dest, timeout=TIMEOUT)
    assert got.path == dest / "ged991-csv.zip"
    assert got.url == url
    assert got.bytes == len(zipped)
    assert got.sha256 == hashlib.sha256(zipped).hexdigest()
    assert hashlib.sha256(got.path.read_bytes()).hexdigest() == got.sha256
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", got.fetched_at)

    csv = extract_events(got.path)
    assert csv == dest / "ged991.csv"
    assert _leftovers(dest) == ["ged991-csv.zip", "ged991.csv"]  # no temporary files

    panel = aggregate_events(read_events(csv), "cm", source=str(csv))
    validate_panel(panel, "cm", source=str(csv))
    assert panel["country_id"].unique().tolist() == [652]
    for code, column in ((1, "ged_sb"), (2, "ged_ns"), (3, "ged_os")):
        expected = int(events.loc[events["type_of_violence"] == code, "best"].sum())
        assert int(panel[column].sum()) == expected

    # a second download replaces the file atomically and leaves nothing else behind
    again = download(url, dest, timeout=TIMEOUT)
    assert again.sha256 == got.sha256
    assert _leftovers(dest) == ["ged991-csv.zip", "ged991.csv"]


def test_plain_csv_download_is_its_own_event_file(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    (root / "GEDEvent_v24_0_1.csv").write_text("id,best\n1,2\n")
    got = download(f"{base}/GEDEvent_v24_0_1.csv", tmp_path / "dl", timeout=TIMEOUT)
    assert extract_events(got.path) == got.path


def test_404_names_url_and_version(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    url = ged_url("99.9", base + "/ged{compact}-csv.zip")
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="404") as err:
        download(url, dest, timeout=TIMEOUT)
    assert url in str(err.value)
    assert "version probably does not exist" in str(err.value)
    assert _leftovers(dest) == []


def test_connection_refused_names_url(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ged241-csv.zip"
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="cannot connect") as err:
        download(url, dest, timeout=TIMEOUT)
    assert url in str(err.value)
    assert _leftovers(dest) == []


def test_timeout_names_url(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="timeout_seconds") as err:
        download(f"{base}/slow", dest, timeout=0.3)
    assert f"{base}/slow" in str(err.value)
    assert _leftovers(dest) == []


def test_truncated_body_leaves_nothing(served: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = served
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / "keep.txt").write_text("earlier download")
    with pytest.raises(DownloadError) as err:
        download(f"{base}/truncated.zip", dest, timeout=TIMEOUT)
    assert f"{base}/truncated.zip" in str(err.value)
    assert _leftovers(dest) == ["keep.txt"]


# --------------------------------------------------------------------------- extract


def test_corrupt_zip_is_refused(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("ged241.csv", "id,best\n" + "".join(f"{i},{i % 7}\n" for i in range(5000)))
    whole = good.read_bytes()
    assert len(whole) > 2000
    (root / "ged241-csv.zip").write_bytes(whole[: len(whole) // 2])  # cut off mid-archive
    dest = tmp_path / "dl"
    got = download(f"{base}/ged241-csv.zip", dest, timeout=TIMEOUT)
    with pytest.raises(DownloadError, match="corrupt") as err:
        extract_events(got.path)
    assert str(got.path) in str(err.value)
    assert _leftovers(dest) == ["ged241-csv.zip"]


def test_zip_with_bad_crc_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ged241-csv.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("ged241.csv", "id,best\n1,2\n")
    data = bytearray(path.read_bytes())
    offset = data.index(b"id,best")
    data[offset : offset + 2] = b"XX"  # same length, wrong CRC
    path.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="corrupt"):
        extract_events(path)
    assert _leftovers(tmp_path) == ["ged241-csv.zip"]


def test_zip_without_csv_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ged241-stata.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ged241.dta", b"stata")
    with pytest.raises(DownloadError, match=r"no \.csv") as err:
        extract_events(path)
    assert "ged241.dta" in str(err.value)
    assert _leftovers(tmp_path) == ["ged241-stata.zip"]


def test_largest_csv_is_extracted_without_path_escape(tmp_path: Path) -> None:
    path = tmp_path / "ged.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__MACOSX/._ged241.csv", "x")
        archive.writestr("../../nested/ged241.csv", "id,best\n1,2\n")
    out = extract_events(path)
    assert out == tmp_path / "ged241.csv"
    assert out.read_text() == "id,best\n1,2\n"


def test_zip_bomb_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    """A CSV expanding beyond [data] max_decompressed_bytes is refused from its zip entry."""
    archive = tmp_path / "ged991-csv.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("GEDEvent.csv", b"id,best\n" + b"1,5\n" * (1 << 19))  # 2 MiB
    with pytest.raises(DownloadError, match="max_decompressed_bytes"):
        extract_events(archive, max_bytes=1 << 20)
    assert _leftovers(tmp_path) == ["ged991-csv.zip"]
    assert extract_events(archive, max_bytes=4 << 20).stat().st_size == 2 * (1 << 20) + 8
