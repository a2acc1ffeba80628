"""Abuse cases of ``ewspipe forecasts query``'s output options (--format, --top, --out,
--force): each is refused with exit 2, one JSON document naming the option and the fix,
and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.abuse.harness import assert_refused, tree_digest

BASE = ["forecasts", "query", "--level", "cm", "--model", "small_ridge", "--json"]


@pytest.mark.parametrize(("args", "mentions"), [
    (["--top", "0"], ("--top", "1 or more")),
    (["--top", "-1"], ("--top", "1 or more")),
    (["--out", "rows.xlsx"], ("option --out", "'.xlsx'", "json, csv, parquet", "--format")),
    (["--out", "rows.csv", "--format", "feather"], ("--format", "feather")),
    (["--out", "missing/rows.csv"], ("--out", "missing", "does not exist")),
    (["--out", "."], ("--out", "is a folder")),
    (["--format", "csv"], ("--format", "--out")),
    (["--force"], ("--force", "--out")),
])
def test_bad_output_options(ewspipe, tmp_path: Path, args: list[str],
                            mentions: tuple[str, ...]) -> None:
    before = tree_digest(tmp_path)
    result = ewspipe("--state-dir", tmp_path / "state", *BASE, *args)
    assert_refused(result, mentions=mentions, before=before, after=tree_digest(tmp_path))


def test_existing_out_needs_force(ewspipe, tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("kept\n")
    before = tree_digest(tmp_path)
    result = ewspipe("--state-dir", tmp_path / "state", *BASE, "--out", "rows.csv")
    assert_refused(result, mentions=("rows.csv", "exists", "--force"), before=before,
                   after=tree_digest(tmp_path))
