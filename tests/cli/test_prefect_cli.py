"""`ewspipe prefect` without Prefect installed: exit 2 with the install hint; the core never
imports Prefect."""

from __future__ import annotations

import subprocess
import sys

from ewspipe.cli.main import main


def test_deploy_without_prefect_exits_2_with_the_install_hint(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "prefect", None)  # import prefect -> ImportError
    code = main(["--state-dir", str(tmp_path), "prefect", "deploy", "--cron", "0 6 5 * *"])
    assert code == 2
    assert "pip install 'ewspipe[prefect]'" in capsys.readouterr().err


def test_the_cli_and_the_monthly_run_do_not_import_prefect():
    code = ("import sys, ewspipe.cli.main, ewspipe.flows.monthly, ewspipe.flows.prefect_flow; "
            "assert 'prefect' not in sys.modules, 'prefect imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
