"""Optional dependencies: each lazy import site turns a missing extra into exit 2 with
``pip install 'ewspipe[<extra>]'``, the extras exist in pyproject.toml, and the core CLI and
library import none of them."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ewspipe.cli.main import main
from ewspipe.extras import EXTRAS, MissingExtra, require
from ewspipe.flows.executors import dask_client_classes
from ewspipe.store.statedb import open_state_db

ROOT = Path(__file__).resolve().parents[1]


def _missing(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:  # a None entry makes `import module` raise ImportError
        monkeypatch.setitem(sys.modules, module, None)


def test_require_names_the_extra_and_the_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing(monkeypatch, "distributed")
    with pytest.raises(MissingExtra) as caught:
        require("dask", "distributed", what="option --executor dask", alternative="use local")
    message = str(caught.value)
    assert message.startswith("option --executor dask needs the optional dependency "
                              "distributed")
    assert "pip install 'ewspipe[dask]'; or use local" in message
    assert caught.value.exit_code == 2 and caught.value.extra == "dask"
    assert require("dask", "dask").__name__ == "dask"  # installed: the module itself


def test_require_refuses_a_module_of_another_extra() -> None:
    with pytest.raises(ValueError, match="not part of the extra 'optuna'"):
        require("optuna", "fastapi")


def test_dask_executor_without_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    _missing(monkeypatch, "distributed")
    with pytest.raises(MissingExtra, match=re.escape("pip install 'ewspipe[dask]'; or use "
                                                     "--executor local")):
        dask_client_classes()


def test_sweep_without_optuna(monkeypatch: pytest.MonkeyPatch) -> None:
    from ewspipe.flows import sweep

    _missing(monkeypatch, "optuna")
    with pytest.raises(MissingExtra, match=re.escape("ewspipe models sweep needs the optional "
                                                     "dependency optuna")):
        sweep._optuna()


def test_serve_without_the_api_extra_exits_2(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    _missing(monkeypatch, "uvicorn")
    assert main(["--state-dir", str(tmp_path), "serve", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "ewspipe serve needs the optional dependency uvicorn" in err
    assert "pip install 'ewspipe[api]'" in err


def test_postgres_state_url_without_psycopg(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    _missing(monkeypatch, "psycopg")
    with pytest.raises(MissingExtra, match=re.escape("pip install 'ewspipe[postgres]'")):
        open_state_db("postgresql://nobody@127.0.0.1:1/none", tmp_path)


def test_every_extra_is_declared_in_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra, modules in EXTRAS.items():
        names = {re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0] for req in declared[extra]}
        assert set(modules) <= names, (extra, names)
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    optional = {m for modules in EXTRAS.values() for m in modules}
    assert not {re.split(r"[\[<>=!~ ]", req, maxsplit=1)[0] for req in core} & optional


def test_the_core_imports_no_extra() -> None:
    code = ("import sys, ewspipe.cli.main, ewspipe.flows.monthly, ewspipe.library; "
            f"print(sorted(m for m in {sorted({m for v in EXTRAS.values() for m in v})!r} "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
