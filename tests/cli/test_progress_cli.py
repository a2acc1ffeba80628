"""Progress of long commands end to end: lines on stderr (not a terminal here), stdout one
JSON document under --json, nothing at all under --quiet / -q."""

from __future__ import annotations

import json

import pytest
from tests.cli.model_files import baseline

from ewspipe.cli.main import main


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two cm baselines on a small demo world (set up once: ~2 s)."""
    root = tmp_path_factory.mktemp("progress")
    (root / "models").mkdir()
    for name, algorithm in (("zero_line", "zero"), ("last_value", "locf")):
        (root / "models" / f"{name}.toml").write_text(baseline(name, algorithm))
    cfg = root / "ewspipe.toml"
    cfg.write_text('[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    assert main(["--config", str(cfg), "data", "demo", "--countries", "20", "--pgm-cells",
                 "50", "--last-month", "520", "--json"]) == 0
    return str(cfg)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_reports_tasks_and_origins_on_stderr_only(config, capsys):
    code, out, err = _run(capsys, "--config", config, "evaluate", "--run-type", "calibration",
                          "--json")
    assert code == 0, err
    doc = json.loads(out)  # stdout: exactly one JSON document, no progress in it
    assert {m["model"] for m in doc["models"]} == {"zero_line", "last_value"}
    lines = err.splitlines()
    assert "\r" not in err  # plain lines off a terminal, no spinner
    for model in ("zero_line", "last_value"):
        assert f"[  0/4] start  fit:{model}" in lines
        assert any(line.startswith("[") and f"ran    predict:{model}" in line
                   for line in lines)
        origins = [line for line in lines if line.startswith(f"      predict {model}: origin")]
        assert len(origins) == 13  # one line per rolling origin
        assert origins[-1].endswith("(13/13)")


def test_forecast_reports_each_model(config, capsys):
    code, out, err = _run(capsys, "--config", config, "forecast", "--json")
    assert code == 0, err
    assert json.loads(out)["run_type"] == "forecasting"
    for model in ("zero_line", "last_value"):
        assert f"      predict {model}: origin 520 (1/1)" in err.splitlines()


@pytest.mark.parametrize("flag", ["--quiet", "-q"])
def test_quiet_silences_progress(config, capsys, flag):
    code, out, err = _run(capsys, "--config", config, "evaluate", "--run-type", "validation",
                          flag, "--json")
    assert code == 0, err
    assert json.loads(out)["run_type"] == "validation"
    assert err == ""


def test_online_eval_reports_each_model(config, capsys):
    assert _run(capsys, "--config", config, "forecast", "-q")[0] == 0
    _, out, err = _run(capsys, "--config", config, "online-eval", "--no-alerts", "--json")
    json.loads(out)
    assert any(line.startswith("      online-eval: scored ") for line in err.splitlines()), err
    _, out, err = _run(capsys, "--config", config, "online-eval", "--no-alerts", "-q",
                          "--json")
    json.loads(out)
    assert err == ""
