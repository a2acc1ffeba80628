"""Every fenced TOML example in README.md and docs/ is a file a user could save and use.

Each ```toml block is classified by its content and validated the way a user would:
a model file (``name``/``level``/``algorithm``) and an ensemble file (``members``) with the
library call behind ``ewspipe models check`` on a scratch folder, a ``[sweep]`` table pasted
into a model file the same way, and an ``ewspipe.toml`` fragment with ``load_settings``.
A block that is deliberately not a whole file is marked in the Markdown with an HTML comment
``<!-- fragment -->`` (optionally ``<!-- fragment: why -->``) on the line before the fence;
it must still be valid TOML. Failures name the Markdown file and the line of the fence.

The generated catalog pages (docs/catalog/) must equal what ``ewspipe models catalog``
writes for the shipped models, so their TOML-looking cells come from code, not hand edits.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ewspipe.catalog import check_models, load_catalog, render_level_page
from ewspipe.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
FRAGMENT = re.compile(r"^<!--\s*fragment\b.*-->$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
MODEL_KEYS = frozenset({"name", "level", "algorithm"})
SETTINGS_SECTIONS = frozenset(Settings.model_fields) - {"source_file"}

# A sweep table alone is checked inside this model, as a user pastes it into a model file.
SWEEP_HOST = """\
name = "doc_sweep"
level = "cm"
target = "ged_sb"
algorithm = "stepshifter"
features = ["lag(ged_sb, 1)", "mmean(ged_sb, 12)"]
status = "shadow"
owner = "docs"
description = "Host model for a [sweep] example from the docs."

[hyperparameters.learner_params]
n_estimators = 100
"""


@dataclass(frozen=True)
class Block:
    """One fenced TOML block: where it is (file relative to the repo, 1-based fence line)."""

    file: str
    line: int
    text: str
    fragment: bool

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def toml_blocks(path: Path, root: Path = ROOT) -> list[Block]:
    """The ```toml blocks of one Markdown file, each with its fence line and fragment mark."""
    return [b for lang, b in fenced_blocks(path, root) if lang == "toml"]


def fenced_blocks(path: Path, root: Path = ROOT) -> list[tuple[str, Block]]:
    """Every fenced block of one Markdown file with its info string (lower case, may be "")."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[tuple[str, Block]] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(2), m.group(3).lower(), i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        before = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        blocks.append((lang, Block(path.relative_to(root).as_posix(), start + 1,
                                   "\n".join(body) + "\n", bool(FRAGMENT.match(before)))))
    return blocks


def looks_like_toml(text: str) -> bool:
    """Parses as TOML and has a [table] header: an example that should be tagged ```toml."""
    if not re.search(r"^\s*\[[\w.\"-]+\]\s*$", text, re.MULTILINE):
        return False
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def classify(data: dict[str, Any]) -> str | None:
    """model, ensemble, sweep or settings; None when the block is none of these."""
    keys = set(data)
    if "members" in keys:
        return "ensemble"
    if keys & MODEL_KEYS:
        return "model"
    if keys == {"sweep"}:
        return "sweep"
    if keys and keys <= SETTINGS_SECTIONS:
        return "settings"
    return None


def _model_problems(name: str, text: str, scratch: Path) -> list[str]:
    models = scratch / "models"
    models.mkdir()
    (models / f"{name}.toml").write_text(text, encoding="utf-8")
    report = check_models(models, ensembles_dir=scratch / "ensembles")
    return [str(p) for p in report.problems]


def _ensemble_problems(name: str, text: str, scratch: Path) -> list[str]:
    # Members refer to models: the shipped ones stand in for the user's catalog.
    models = scratch / "models"
    shutil.copytree(ROOT / "models", models)
    (models / f"{name}.toml").unlink(missing_ok=True)
    ensembles = scratch / "ensembles"
    ensembles.mkdir()
    (ensembles / f"{name}.toml").write_text(text, encoding="utf-8")
    report = check_models(models, ensembles_dir=ensembles)
    return [str(p) for e in report.ensembles for p in e.problems]


def _settings_problems(text: str, scratch: Path) -> list[str]:
    path = scratch / "ewspipe.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_settings(path)
    except Exception as exc:  # the message is what a user would see
        return [str(exc)]
    return []


def problems(block: Block, scratch: Path) -> list[str]:
    """Why the block is not a valid file of its kind (empty when it is)."""
    try:
        data = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"at line (\d+)", str(exc))
        line = f" on {block.file}:{block.line + int(at.group(1))}" if at else ""
        return [f"not valid TOML{line}: {exc}"]
    if block.fragment:
        return []
    kind = classify(data)
    name = str(data.get("name") or "doc_example")
    found: list[str] | None = None
    if kind == "model":
        found = _model_problems(name, block.text, scratch)
    elif kind == "ensemble":
        found = _ensemble_problems(name, block.text, scratch)
    elif kind == "sweep":
        found = _model_problems("doc_sweep", SWEEP_HOST + "\n" + block.text, scratch)
    elif kind == "settings":
        found = _settings_problems(block.text, scratch)
    if found is not None:  # scratch paths mean nothing to the reader: show models/x.toml
        return [p.replace(f"{scratch.resolve()}/", "").replace(f"{scratch}/", "") for p in found]
    return [f"not a model, ensemble, [sweep] or ewspipe.toml example (top-level keys: "
            f"{sorted(data)}); if it is deliberately partial, put `<!-- fragment -->` on the "
            "line before the fence"]


BLOCKS = [b for f in doc_files() for b in toml_blocks(f)]


def test_the_docs_have_toml_examples() -> None:
    assert any(b.file == "docs/models.md" and not b.fragment for b in BLOCKS), BLOCKS


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_toml_example_is_valid(block: Block, tmp_path: Path) -> None:
    found = problems(block, tmp_path)
    assert not found, f"{block.where}: the ```toml example is invalid:\n  " + "\n  ".join(found)


def test_toml_examples_are_tagged_toml() -> None:
    """An untagged block of TOML would escape the check above."""
    untagged = [b.where for f in doc_files() for lang, b in fenced_blocks(f)
                if lang in ("", "text", "ini", "conf") and looks_like_toml(b.text)]
    assert not untagged, f"tag these TOML examples ```toml so they are checked: {untagged}"
    assert looks_like_toml("[qa]\nmax_forecast_factor = 10.0\n")
    assert not looks_like_toml("models/x.toml: line 4: invalid TOML\n[qa]\n")


def test_a_broken_example_is_reported_with_file_and_line(tmp_path: Path) -> None:
    """The checker itself: one good block of each kind passes, each bad one fails, by line."""
    md = tmp_path / "docs" / "guide.md"
    md.parent.mkdir()
    md.write_text("\n".join([
        "# Guide", "",
        "```toml", 'name = "amber_tree"', 'level = "cm"', 'target = "ged_sb"',
        'algorithm = "stepshifter"', "features = []", 'status = "shadow"', 'owner = "a"',
        'description = "d"', "[hyperparameters]", "n_estimators = 300", "```", "",
        "```toml", "[qa]", "max_forecast_factor = 10.0", "```",
        "```toml", "[qa]", "max_forecast_factr = 10.0", "```",
        "```toml", "[sweep]", "trials = 3", "[sweep.space]",
        "learner_params.num_leaves = { int = [7, 31] }", "```",
        "```toml", "[sweep]", "trails = 3", "```",
        "<!-- fragment: elided -->", "", "```toml", "x = 1", "```",
        "```toml", "x = [1, ...]", "```",
        "```toml", "x = 1", "```",
        "```sh", "ewspipe models check", "```",
        "```toml", 'name = "calm_chorus"', 'level = "cm"', 'target = "ged_sb"',
        'members = ["amber_tree", "amber_ridge"]', 'aggregation = "mean"', 'status = "shadow"',
        'owner = "a"', 'description = "d"', "```",
        "```toml", 'name = "calm_chorus"', 'level = "cm"', 'target = "ged_sb"',
        'members = ["amber_tree", "amber_rigde"]', 'aggregation = "mean"', 'status = "shadow"',
        'owner = "a"', 'description = "d"', "```",
    ]) + "\n", encoding="utf-8")
    blocks = toml_blocks(md, root=tmp_path)
    assert [b.line for b in blocks] == [3, 16, 20, 24, 30, 36, 39, 42, 48, 58]
    assert [b.fragment for b in blocks] == [False] * 5 + [True] + [False] * 4
    results = {}
    for i, b in enumerate(blocks):
        scratch = tmp_path / f"s{i}"
        scratch.mkdir()
        results[b.line] = "\n".join(problems(b, scratch))
    assert [line for line, p in results.items() if not p] == [16, 24, 36, 48]
    assert "unknown hyperparameter 'n_estimators'" in results[3]
    assert "max_forecast_factr" in results[20]
    assert "trails" in results[30]
    assert "not valid TOML on docs/guide.md:40" in results[39]
    assert "<!-- fragment -->" in results[42]
    assert "amber_rigde" in results[58]


@pytest.mark.parametrize("level", ["cm", "pgm"])
def test_catalog_pages_are_generated_from_the_shipped_models(level: str) -> None:
    catalog = load_catalog(ROOT / "models", ensembles_dir=ROOT / "ensembles")
    page = ROOT / "docs" / "catalog" / f"models_{level}.md"
    assert page.read_text(encoding="utf-8") == render_level_page(catalog, level), (
        f"{page.relative_to(ROOT)} is not what the generator writes for models/; regenerate "
        "it with `ewspipe models catalog` (never edit it by hand)")
    # Its hyperparameter cells are TOML assignments a user can paste under [hyperparameters].
    for cell in re.findall(r"`([\w.]+ = [^`]+)`", page.read_text(encoding="utf-8")):
        tomllib.loads(cell)
