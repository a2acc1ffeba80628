"""MLflow aliases of a release when nothing matches it (a real SQLite MLflow store): a stale
``production`` alias is removed rather than left on a version the release did not validate,
and the notes say so; without a tracking store nothing is created. The matching itself
(promote, hotfix, rollback, staging evidence) is tested in test_release_mlflow.py."""

from __future__ import annotations

import os

from release_repo import git, make_repo, open_ctx, release_first

from ewspipe.store.tracking import tracking_uri


def _track(tmp_path):
    repo = make_repo(tmp_path)
    cfg = repo / "ewspipe.toml"
    cfg.write_text(cfg.read_text().replace("[tracking]\nenabled = false", "[tracking]\n"
                                           "enabled = true"))
    git(repo, "commit", "-q", "-am", "chore: track runs")
    ctx = open_ctx(repo, tmp_path / "state")
    assert ctx.settings.tracking.enabled
    return ctx


def test_a_stale_alias_is_removed_when_nothing_matches(tmp_path):
    ctx = _track(tmp_path)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    (tmp_path / "state").mkdir(exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri(ctx.settings))
    client.create_registered_model("small_chorus")
    old = client.create_model_version("small_chorus", source=(tmp_path / "a").as_uri())
    client.create_model_version("small_chorus", source=(tmp_path / "b").as_uri())  # newest
    client.set_registered_model_alias("small_chorus", "production", old.version)
    release_first(ctx)
    manifest = ctx.ledger.releases()[0]["manifest"]
    assert manifest["aliases"] == {}
    notes = manifest["alias_notes"]
    assert ("small_chorus: no registered version matches the release and no staging evidence "
            "was found; alias removed") in notes
    assert ("small_tree: no registered version matches the release and no staging evidence "
            "was found; alias not set") in notes
    try:
        client.get_model_version_by_alias("small_chorus", "production")
        raise AssertionError("the stale alias is still there")
    except MlflowException as exc:
        assert "production" in str(exc)


def test_no_tracking_store_is_a_note(tmp_path):
    ctx = _track(tmp_path)
    release_first(ctx)
    manifest = ctx.ledger.releases()[0]["manifest"]
    notes = manifest["alias_notes"]
    assert "grid_chorus: the release names no pgm snapshot" in notes  # the test report: cm
    assert notes[-1].startswith("MLflow aliases skipped: no tracking store yet")
    assert manifest["aliases"] == {}
    assert not (tmp_path / "state" / "mlflow.db").exists()
