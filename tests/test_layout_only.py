"""ewspipe.layout is the only module that knows where things live (issue 17): no other module
in src/ewspipe joins a path onto the state directory or an environment's folder, and no module
but settings.py names an environment ("production", "staging", "development")."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import ewspipe
from ewspipe.layout import StateLayout
from ewspipe.settings import STAGING_ENVIRONMENT, Settings

SRC = Path(ewspipe.__file__).resolve().parent

# a name (variable, attribute or function) that holds the state directory or a folder in it
STATEISH = re.compile(r"state|^env_dir$|^prod_dir$|^staging_root$", re.IGNORECASE)


def _terminal(node: ast.AST) -> str | None:
    """The name an expression ends in: ``settings.state_dir`` -> state_dir, ``side_state(..)``
    -> side_state, ``Path(state)`` -> state, ``a / b / c`` -> that of ``a``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Path" and node.args:
            return _terminal(node.args[0])
        return _terminal(func)
    if isinstance(node, ast.Subscript):
        return _terminal(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _terminal(node.left)
    return None


def _stateish(node: ast.AST) -> bool:
    name = _terminal(node)
    if name is None:
        return False
    if name == "root" and "layout" in ast.unparse(node):
        return True  # settings.layout.root / "x", layout.env(e).root / "x"
    return bool(STATEISH.search(name))


def path_joins(source: str) -> Iterator[tuple[int, str]]:
    """(line, code) of every ``/``, ``joinpath`` or ``os.path.join`` onto a state folder."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _stateish(node.left):
            yield node.lineno, ast.unparse(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            joinpath = func.attr == "joinpath" and _stateish(func.value)
            os_join = (func.attr == "join" and ast.unparse(func.value) in ("os.path", "path")
                       and bool(node.args) and _stateish(node.args[0]))
            if joinpath or os_join:
                yield node.lineno, ast.unparse(node)


def _modules() -> Iterator[tuple[str, str]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), path.read_text(encoding="utf-8")


def test_no_module_but_layout_joins_paths_onto_the_state_dir() -> None:
    offenders = [f"src/ewspipe/{module}:{line}: {code}"
                 for module, text in _modules() if module != "layout.py"
                 for line, code in path_joins(text)]
    assert not offenders, (
        "ask ewspipe.layout for the location (settings.layout.<name>, "
        "settings.layout.env(name).<name>, StateFolder(root).resolve(relative)) instead of "
        "joining paths onto the state directory:\n" + "\n".join(offenders))


@pytest.mark.parametrize("code", [
    'settings.state_dir / "runs"',
    'settings.state_dir / env / "predictions"',
    "ctx.state / item['path']",
    "self.state / p",
    'side.env_state / "artifacts" / model',
    'Path(state_dir) / "state.db"',
    'side_state(root, sha) / "x"',
    'settings.layout.root / "new"',
    'settings.layout.env(e).root / "x"',
    'env_dir / "published"',
    'staging_root / "sides"',
    'os.path.join(settings.state_dir, "runs")',
    'state.joinpath("tasks")',
])
def test_the_scan_sees_a_join(code: str) -> None:
    assert [c for _, c in path_joins(f"import os\nx = {code}\n")]


@pytest.mark.parametrize("code", [
    "settings.layout.runs / run_id",
    'settings.layout.env(e).predictions / "x"',
    "run_dir / entry['predictions']",
    "request.app.state.settings",
    "StateFolder(state).resolve(p)",
])
def test_the_scan_leaves_a_layout_location_alone(code: str) -> None:
    assert not list(path_joins(f"x = {code}\n"))


# ------------------------------------------------------------------------ environment names

ENV_NAMES = {"production", "staging", "development"}

# (module, a fragment of the line's code): a literal environment name that is not an
# environment identifier, and why
ALLOWED = {
    # the two sides of a staged release are roles (shown in messages), not environments
    ("release/staging.py", 'Side("production"'),
}


def _field_name(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> bool:
    """A JSON field / column name: a dict key, ``doc["production"]``, ``.get("production")``,
    ``.rename("production")`` (the production/candidate sides of a comparison, the
    production/development branches of a release)."""
    parent = parents.get(node)
    if isinstance(parent, ast.Dict):
        return node in parent.keys
    if isinstance(parent, ast.Subscript):
        return parent.slice is node
    if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Attribute):
        return parent.func.attr in ("get", "rename") and parent.args[:1] == [node]
    return False


def env_literals(source: str) -> Iterator[tuple[int, str]]:
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = source.splitlines()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and node.value in ENV_NAMES
                and not _field_name(node, parents)):
            yield node.lineno, lines[node.lineno - 1].strip()


def test_no_environment_name_outside_settings() -> None:
    offenders = [f"src/ewspipe/{module}:{line}: {code}"
                 for module, text in _modules() if module not in ("settings.py", "layout.py")
                 for line, code in env_literals(text)
                 if not any(m == module and frag in code for m, frag in ALLOWED)]
    assert not offenders, (
        "environments are configured ([run] environments, publish_environments): derive the "
        "name from the settings (settings.run.production_environment, settings.run.environment, "
        "ewspipe.settings.STAGING_ENVIRONMENT) instead of writing it:\n" + "\n".join(offenders))


def test_the_env_scan_sees_a_name_and_skips_field_names() -> None:
    assert list(env_literals('env = "production"\n'))
    assert list(env_literals('f(env="staging")\n'))
    assert list(env_literals('x = ("production", settings.run.environment)\n'))
    assert not list(env_literals('d = {"production": a, "candidate": b}\n'))
    assert not list(env_literals('x = doc["development"]\ny = m.get("production")\n'))


# ------------------------------------------------------------------------ the layout itself


def test_layout_keeps_the_locations_and_shares_one_artifact_cache(tmp_path: Path) -> None:
    settings = Settings(workspace={"state_dir": tmp_path})
    layout = settings.layout
    assert layout == StateLayout(tmp_path)
    assert settings.artifact_dir == layout.artifacts == tmp_path / "artifacts"
    assert settings.runs_dir == tmp_path / "runs"
    assert settings.snapshot_dir == tmp_path / "snapshots"
    assert settings.download_dir == tmp_path / "downloads"
    prod = layout.env(settings.run.production_environment)
    assert prod.root == tmp_path / settings.run.production_environment
    assert prod.artifacts == layout.env(STAGING_ENVIRONMENT).artifacts == layout.artifacts
    assert prod.lock == prod.root / "run.lock"
    assert prod.state_db == prod.root / "state.db"
    assert prod.resolve("predictions/x") == prod.predictions / "x"
    assert prod.relative(prod.published / "cm" / "ged_sb.json") == "published/cm/ged_sb.json"
    assert layout.sweep_db("m") == tmp_path / "sweeps" / "m.db"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../prod"])
def test_an_environment_must_be_a_folder_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ewspipe.errors.InputError, match="not a folder name"):
        StateLayout(tmp_path).env(name)
