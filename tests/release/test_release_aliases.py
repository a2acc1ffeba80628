"""MLflow aliases of a release: the newest registered version of each deployed model or
ensemble gets the alias ``production``; a model without a registered version is skipped with
a note (a real SQLite MLflow store)."""

from __future__ import annotations

import os

from release_repo import git, make_repo, open_ctx, release_first

from ewspipe.store.tracking import tracking_uri


def test_aliases_for_registered_models(tmp_path):
    repo = make_repo(tmp_path)
    cfg = repo / "ewspipe.toml"
    cfg.write_text(cfg.read_text().replace("[tracking]\nenabled = false", "[tracking]\n"
                                           "enabled = true"))
    git(repo, "commit", "-q", "-am", "chore: track runs")
    ctx = open_ctx(repo, tmp_path / "state")
    assert ctx.settings.tracking.enabled
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow.tracking import MlflowClient

    (tmp_path / "state").mkdir(exist_ok=True)
    client = MlflowClient(tracking_uri=tracking_uri(ctx.settings))
    client.create_registered_model("small_chorus")
    client.create_model_version("small_chorus", source=(tmp_path / "a").as_uri())
    newest = client.create_model_version("small_chorus", source=(tmp_path / "b").as_uri())
    release_first(ctx)
    notes = ctx.ledger.releases()[0]["manifest"]["aliases"]
    assert f"small_chorus: alias production -> version {newest.version}" in notes
    assert "small_tree: no registered model version, alias not set" in notes
    assert client.get_model_version_by_alias("small_chorus", "production").version == \
        newest.version
    tags = client.get_model_version("small_chorus", newest.version).tags
    assert tags["ewspipe.release"] == "v0.1.0"


def test_no_tracking_store_is_a_note(tmp_path):
    repo = make_repo(tmp_path)
    cfg = repo / "ewspipe.toml"
    cfg.write_text(cfg.read_text().replace("enabled = false", "enabled = true"))
    git(repo, "commit", "-q", "-am", "chore: track runs")
    ctx = open_ctx(repo, tmp_path / "state")
    release_first(ctx)
    [note] = ctx.ledger.releases()[0]["manifest"]["aliases"]
    assert note.startswith("MLflow aliases skipped: no tracking store yet")
