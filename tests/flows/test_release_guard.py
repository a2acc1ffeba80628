"""The publish guard: only a clean production release (HEAD at a release tag that is the
production branch's head, no uncommitted tracked changes, a completed ledger entry) may
publish; `ewspipe run --env production` refuses anything else before running."""

from __future__ import annotations

import subprocess

import pytest
from monthly_workspace import release_workspace, write_monthly_workspace

from ewspipe.flows.release_guard import ReleaseGuardFailed, check_release
from ewspipe.settings import load_settings


def _git(root, *args):
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def ws(tmp_path):
    return write_monthly_workspace(tmp_path / "ws")


def _settings(cfg, tmp_path):
    return load_settings(cfg, state_dir=tmp_path / "state")


def test_a_clean_release_may_publish(ws, tmp_path):
    tag = release_workspace(ws, tmp_path / "state")
    found = check_release(_settings(ws, tmp_path))
    assert found["tag"] == tag == "v0.1.0" and found["version"] == "0.1.0"
    assert found["commit"] == _git(ws.parent, "rev-parse", "HEAD")


def test_not_a_git_repository(ws, tmp_path):
    with pytest.raises(ReleaseGuardFailed, match=r"not a git repository"):
        check_release(_settings(ws, tmp_path))


def test_refusals(ws, tmp_path):
    release_workspace(ws, tmp_path / "state")
    settings = _settings(ws, tmp_path)
    root = ws.parent
    ws.write_text(ws.read_text() + "\n# edited\n")
    with pytest.raises(ReleaseGuardFailed, match=r"uncommitted changes.*ewspipe.toml"):
        check_release(settings)
    _git(root, "checkout", "-q", "--", "ewspipe.toml")
    _git(root, "checkout", "-q", "development")
    _git(root, "commit", "-q", "--allow-empty", "-m", "feat: unreleased")
    with pytest.raises(ReleaseGuardFailed, match=r"not the head of the production branch"):
        check_release(settings)
    _git(root, "checkout", "-q", "production")
    _git(root, "commit", "-q", "--allow-empty", "-m", "fix: straight onto production")
    with pytest.raises(ReleaseGuardFailed, match=r"not at a release tag"):
        check_release(settings)
    _git(root, "tag", "-a", "v0.1.1", "-m", "by hand")
    with pytest.raises(ReleaseGuardFailed, match=r"v0.1.1 has no completed entry"):
        check_release(settings)


def test_production_run_refuses_before_running(ws, tmp_path, cli):
    """Nothing runs and nothing is published from an unreleased workspace (exit 1)."""
    res = cli("--config", str(ws), "run", "--env", "production", "--json")
    assert res.code == 1, res.err
    assert "refusing to publish" in res.json()["error"]
    assert not (tmp_path / "state" / "production" / "published").exists()
    assert not (tmp_path / "state" / "production" / "tasks").exists()
