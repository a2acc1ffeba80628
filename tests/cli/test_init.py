"""`ewspipe init DIR` / ``ewspipe.init_workspace``: a workspace outside this repository that
`ewspipe data demo && ewspipe run` can use at once, with settings that cannot drift from the
built-in defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import ewspipe
from ewspipe.catalog.loader import check_models
from ewspipe.settings import load_settings
from ewspipe.starter import STARTER_FILES

REPO = Path(__file__).resolve().parents[2]
PACKAGED = Path(ewspipe.__file__).resolve().parent / "starter" / "files"


def _ewspipe(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EWSPIPE_CONFIG", "EWSPIPE_STATE_DIR")}
    return subprocess.run([sys.executable, "-m", "ewspipe", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_init_then_demo_then_run_works_outside_the_repository(tmp_path: Path) -> None:
    assert REPO not in tmp_path.parents
    made = _ewspipe(tmp_path, "init", "NEWDIR")
    assert made.returncode == 0, made.stderr
    ws = tmp_path / "NEWDIR"
    assert "ewspipe run" in made.stdout
    demo = _ewspipe(ws, "data", "demo", "--countries", "20", "--pgm-cells", "50",
                    "--last-month", "200")
    assert demo.returncode == 0, demo.stderr
    run = _ewspipe(ws, "run", "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "ok", doc
    assert (ws / ".ewspipe" / "development" / "predictions").is_dir()
    assert not (ws / ".git").exists()  # the run needs no git repository
    assert ".ewspipe/" in (ws / ".gitignore").read_text().splitlines()


def test_the_settings_are_the_builtin_defaults_with_their_comments(tmp_path: Path) -> None:
    written = ewspipe.init_workspace(tmp_path / "ws")
    assert sorted(p.relative_to(tmp_path / "ws").as_posix() for p in written) == sorted(
        STARTER_FILES)
    (tmp_path / "ws" / "empty.toml").write_text("")
    shipped = load_settings(tmp_path / "ws" / "ewspipe.toml").model_dump()
    builtin = load_settings(tmp_path / "ws" / "empty.toml").model_dump()
    del shipped["source_file"], builtin["source_file"]
    assert shipped == builtin
    text = (tmp_path / "ws" / "ewspipe.toml").read_text()
    assert text.count("\n#") > 50  # the comments travel with the values
    # the repository's own settings file is the template: one text, no second copy to drift
    assert text == (REPO / "ewspipe.toml").read_text()


def test_models_and_ensemble_are_the_repository_definitions_and_check(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ewspipe.init_workspace(ws)
    for relative in STARTER_FILES:
        if relative.startswith(("models/", "ensembles/")):
            assert (ws / relative).read_text() == (REPO / relative).read_text(), relative
    statuses = {tomllib.loads(p.read_text())["status"] for p in (ws / "models").glob("*.toml")}
    assert {"baseline", "deployed"} <= statuses
    report = check_models(ws / "models", ensembles_dir=ws / "ensembles")
    assert report.ok, report


def test_force_writes_into_a_non_empty_folder_and_keeps_other_files(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "models").mkdir(parents=True)
    (ws / "models" / "mine.toml").write_text("# mine\n")
    (ws / "ewspipe.toml").write_text("[demo]\nseed = 1\n")
    ewspipe.init_workspace(ws, force=True)
    assert (ws / "models" / "mine.toml").read_text() == "# mine\n"
    assert (ws / "ewspipe.toml").read_text() == (PACKAGED / "ewspipe.toml").read_text()


def test_package_data_ships_every_starter_file() -> None:
    """The wheel carries what ``init_workspace`` copies: pyproject's package-data globs match
    every packaged starter file (an editable install reads them from src/ directly)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["ewspipe.starter"]
    for packaged in STARTER_FILES.values():
        assert (PACKAGED / packaged).is_file(), packaged
        shipped = f"files/{packaged}"
        assert any(Path(shipped).match(g) and shipped.count("/") == g.count("/")
                   for g in globs), f"{shipped} is not in the wheel's package-data"
