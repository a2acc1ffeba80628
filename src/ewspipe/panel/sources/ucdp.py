"""Fetch UCDP GED releases over HTTP(S): URL from a version, atomic download, zip extraction.

A download is streamed into a temporary file next to its destination and renamed only once
complete, so an interrupted or failed fetch never leaves a file that looks like data. The
sha256 and fetch time are recorded because snapshots are identified by content and date.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import re
import shutil
import string
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from ewspipe.atomic import atomic_file
from ewspipe.errors import DownloadError
from ewspipe.progress import current as current_reporter

__all__ = [
    "DEFAULT_GED_URL",
    "Download",
    "download",
    "extract_events",
    "ged_url",
]

DEFAULT_GED_URL = "https://ucdp.uu.se/downloads/ged/ged{compact}-csv.zip"
_PLACEHOLDERS = frozenset({"version", "compact", "underscored"})
_VERSION = re.compile(r"^\d{2}\.\d{1,2}(\.\d{1,2})?$")
_CHUNK = 1 << 20
_USER_AGENT = "ewspipe (conflict early-warning pipeline; python urllib)"


@dataclass(frozen=True)
class Download:
    """A fetched file and the evidence of what was fetched."""

    path: Path
    url: str
    sha256: str
    bytes: int
    fetched_at: str  # UTC, ISO 8601, e.g. "2024-07-01T12:00:00Z"

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "url": self.url,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "fetched_at": self.fetched_at,
        }


def ged_url(version: str, template: str = DEFAULT_GED_URL) -> str:
    """The download URL of a GED release, e.g. ``ged_url("24.1") -> .../ged241-csv.zip``.

    Placeholders: ``{version}`` ("24.1"), ``{compact}`` ("241"), ``{underscored}`` ("24_1").
    Candidate monthly releases have three parts ("24.0.10" -> "24010" / "24_0_10").

    Raises:
        DownloadError: the version is not ``NN.N`` / ``NN.N.N``, or the template has an
            unknown placeholder or is not an http(s) URL.
    """
    version = version.strip()
    if not _VERSION.match(version):
        raise DownloadError(
            f"{version!r} is not a UCDP version; use NN.N for a GED release "
            "(e.g. 24.1) or NN.N.N for a Candidate release (e.g. 24.0.10)", parameter="version"
        )
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise DownloadError(
            f"setting sources.ucdp.ged_url: {template!r} is not a valid template ({exc}); "
            "write placeholders as {version}, {compact} or {underscored}"
        ) from exc
    unknown = sorted(fields - _PLACEHOLDERS)
    if unknown:
        raise DownloadError(
            f"setting sources.ucdp.ged_url: unknown placeholder {{{unknown[0]}}} in {template!r}; "
            "use {version} (24.1), {compact} (241) or {underscored} (24_1)"
        )
    url = template.format(
        version=version,
        compact=version.replace(".", ""),
        underscored=version.replace(".", "_"),
    )
    _check_http(url, fix="set sources.ucdp.ged_url to an https://... address")
    return url


def _check_http(url: str, *, fix: str = "pass an https://... address",
                parameter: str | None = None) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise DownloadError(f"{url!r} is not an http(s) URL; {fix}", parameter=parameter)


def _safe_name(name: str, default: str) -> str:
    """The last segment of ``name`` with only [A-Za-z0-9._-]: it can never leave the directory."""
    base = re.split(r"[/\\]", name)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".")
    return base or default


def _file_name(url: str) -> str:
    """The last path segment of the URL, made safe to use as a file name."""
    return _safe_name(urllib.parse.unquote(urllib.parse.urlsplit(url).path), "download")


@contextlib.contextmanager
def _temporary_sibling(target: Path) -> Iterator[IO[bytes]]:
    """An open temporary file beside ``target``, renamed to it on a clean exit and removed on
    any failure (ewspipe.atomic)."""
    with atomic_file(target) as tmp, tmp.open("xb") as fh:
        yield fh


def _now_utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def download(url: str, dest_dir: Path | str, *, timeout: float) -> Download:
    """Stream ``url`` into ``dest_dir/<name from the URL>`` atomically and hash it.

    Args:
        url: an http(s) URL (see :func:`ged_url`).
        dest_dir: directory for the file; created if missing. An existing file of the same
            name is replaced only after the new one is complete.
        timeout: seconds to wait for the connection and for each read.

    Raises:
        DownloadError: HTTP error (404: the version probably does not exist), refused
            connection, timeout, a truncated or empty body. Nothing is left behind.
    """
    _check_http(url, parameter="url")
    if not timeout > 0:
        raise DownloadError(f"timeout must be > 0 seconds, got {timeout}")
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create download directory {dest_dir}: {exc}") from exc
    target = dest_dir / _file_name(url)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.sha256()
    size = 0
    fetched_at = _now_utc()
    try:
        with (
            urllib.request.urlopen(request, timeout=timeout) as response,
            _temporary_sibling(target) as fh,
        ):
            expected = response.headers.get("Content-Length")
            total = int(expected) if expected is not None and expected.isdigit() else None
            report = current_reporter()
            label = f"download {_file_name(url)}"
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                if size != total:  # the end is said once, below
                    report.transfer(label, size, total)
            if expected is not None and expected.isdigit() and int(expected) != size:
                raise DownloadError(
                    f"{url}: the download was cut off ({size:,} of {int(expected):,} bytes); "
                    "try again"
                )
            if size == 0:
                raise DownloadError(f"{url}: the server sent an empty file; try again later")
            report.transfer(label, size, size)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise DownloadError(
                f"{url}: not found (HTTP 404); the version probably does not exist. Check the "
                "version number against the UCDP download page (--version) or the URL template "
                "(sources.ucdp.ged_url)"
            ) from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; try again later") from exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise DownloadError(
                f"{url}: no answer within {timeout:g} s; try again or raise "
                "sources.ucdp.timeout_seconds"
            ) from exc
        raise DownloadError(
            f"{url}: cannot connect ({reason}); check the address and your network"
        ) from exc
    except TimeoutError as exc:
        raise DownloadError(
            f"{url}: the server stopped sending for {timeout:g} s; try again or raise "
            "sources.ucdp.timeout_seconds"
        ) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: the download failed ({exc!r}); try again") from exc
    return Download(
        path=target, url=url, sha256=digest.hexdigest(), bytes=size, fetched_at=fetched_at
    )


def _is_zip(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return True
    with path.open("rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _too_big(path: Path, size: int, limit: int) -> DownloadError:
    return DownloadError(
        f"{path}: the CSV inside expands to {size:,} bytes or more, beyond the limit of "
        f"{limit:,} ([data] max_decompressed_bytes); check the URL points to a GED release, or "
        "raise the limit in ewspipe.toml"
    )


def extract_events(path: Path | str, *, max_bytes: int | None = None) -> Path:
    """The event CSV: ``path`` itself if it is not a zip, else its CSV extracted next to it.

    UCDP ships GED as ``gedNNN-csv.zip`` holding one CSV; if several are inside, the largest
    is taken (resource-fork files such as ``__MACOSX/._x.csv`` are tiny). Extraction goes to a
    temporary sibling that is renamed when complete.

    ``max_bytes`` bounds the extracted size (``[data] max_decompressed_bytes``): a zip bomb is
    refused from its directory entry, and the copy stops there whatever the entry claims.

    Raises:
        DownloadError: missing file, corrupt zip, a zip without a CSV, or one too large.
    """
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path}: file not found")
    if not _is_zip(path):
        return path
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir() and m.filename.lower().endswith(".csv")
            ]
            if not members:
                names = ", ".join(m.filename for m in archive.infolist()[:10]) or "nothing"
                raise DownloadError(
                    f"{path}: the zip holds no .csv file (it holds: {names}); check the URL "
                    "points to the CSV edition of GED"
                )
            member = max(members, key=lambda m: m.file_size)
            if max_bytes is not None and member.file_size > max_bytes:
                raise _too_big(path, member.file_size, max_bytes)
            target = path.parent / _safe_name(member.filename, "events.csv")
            with _temporary_sibling(target) as fh, archive.open(member) as src:
                if max_bytes is None:
                    shutil.copyfileobj(src, fh, _CHUNK)
                else:
                    copied = 0
                    while block := src.read(_CHUNK):
                        copied += len(block)
                        if copied > max_bytes:
                            raise _too_big(path, copied, max_bytes)
                        fh.write(block)
    except DownloadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
        raise DownloadError(
            f"{path}: corrupt or unreadable zip ({exc}); delete it and download again"
        ) from exc
    except OSError as exc:
        raise DownloadError(f"{path}: cannot extract ({exc})") from exc
    return target
