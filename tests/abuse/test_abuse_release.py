"""Fault-and-abuse cases of `ewspipe release ...` (and the production run's release guard):
release commands against hostile repository and ledger states (issue 18, item 10 and the
release part of "Done when"). Each case copies one released repository (v0.1.0 and v0.2.0
released, a staged feature on development), breaks it, runs one command with --json and
asserts the clean refusal of tests/abuse/harness.py: exit code (1 a failed check, 2 bad
input), one JSON document, the named thing and its fix, and nothing changed in the git refs,
the working tree and (where the command should not write it) the state folder."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.abuse.harness import assert_refused, tree_digest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "release"))
from release_repo import git, release_twice, stage_ok


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Path:
    """v0.1.0 and v0.2.0 released; development one staged feature ahead; on development."""
    root = tmp_path_factory.mktemp("abuse-release")
    stage_ok(release_twice(root))
    return root


def _digest(root: Path, *, state: bool) -> dict[str, str]:
    """The refs, HEAD and working tree of the repository (git's index and logs, which a
    read may refresh, left out) and, with ``state``, the state folder."""
    repo = root / "repo"
    keep = (str(repo / ".git" / "refs"), str(repo / ".git" / "HEAD"),
            str(repo / ".git" / "packed-refs"), str(repo / ".git" / "MERGE_HEAD"))
    found = tree_digest(repo, *([root / "state"] if state else []))
    return {k: v for k, v in found.items()
            if f"{repo / '.git'}" not in k or k.startswith(keep)}


# ----------------------------------------------------------------- hostile states

def _rewound(repo: Path) -> None:  # `git branch -f production main~3`: older code
    git(repo, "branch", "-f", "production", "v0.1.0")


def _orphaned(repo: Path) -> None:  # production at a commit older than every release
    git(repo, "branch", "-f", "production", "v0.1.0~1")


def _moved_tag(repo: Path) -> None:
    git(repo, "tag", "-f", "-a", "v0.2.0", "-m", "moved", "v0.1.0^{commit}")


def _deleted_tag(repo: Path) -> None:
    git(repo, "tag", "-d", "v0.2.0")


def _stray_tag(repo: Path) -> None:
    git(repo, "tag", "-a", "v0.3.0", "-m", "by hand", "development")


def _dirty(repo: Path) -> None:
    (repo / "models" / "small_ridge.toml").write_text("# edited\n", encoding="utf-8")


def _untracked_model(repo: Path) -> None:
    _on_production(repo)
    (repo / "models" / "rogue.toml").write_text("name = 'rogue'\n", encoding="utf-8")


def _ignored_model(repo: Path) -> None:
    _on_production(repo)
    (repo / ".git" / "info" / "exclude").write_text("models/*.local.toml\n")
    (repo / "models" / "rogue.local.toml").write_text("name = 'rogue'\n", encoding="utf-8")


def _half_merged(repo: Path) -> None:  # the user's own merge left half done
    git(repo, "checkout", "-q", "production")
    git(repo, "merge", "-q", "--no-ff", "--no-commit", "development")


def _detached(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach", "development")


def _on_production(repo: Path) -> None:
    git(repo, "checkout", "-q", "production")


def _rewound_on_production(repo: Path) -> None:
    _on_production(repo)
    git(repo, "reset", "-q", "--hard", "v0.1.0")


def _publishes_nowhere(repo: Path) -> None:
    _on_production(repo)
    with (repo / "ewspipe.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[run]\npublish_environments = ["nowhere"]\n')


def _nothing(repo: Path) -> None:
    pass


def _ledger_path(root: Path) -> Path:
    return root / "state" / "production" / "state.db"


def _no_ledger(root: Path) -> None:
    _ledger_path(root).unlink()


def _garbage_ledger(root: Path) -> None:
    _ledger_path(root).write_bytes(b"this is not a database\n" * 64)


def _corrupt_manifest(root: Path) -> None:
    with sqlite3.connect(_ledger_path(root)) as db:
        db.execute("UPDATE release_ledger SET manifest = '{not json' WHERE version = '0.2.0'")


def _corrupt_plan(root: Path) -> None:  # a pending entry whose stored plan is damaged
    with sqlite3.connect(_ledger_path(root)) as db:
        db.execute("UPDATE release_ledger SET status = 'pending', plan = '[1, 2' "
                   "WHERE version = '0.2.0'")


Break = Callable[[Path], None]
FIX_PROD = "git branch -f production v0.2.0"

#: id -> (repository change, state change, command, exit code, mentions, state untouched)
CASES: dict[str, tuple[Break, Break | None, tuple[str, ...], int, tuple[str, ...], bool]] = {
    "check: rewound production": (_rewound, None, ("release", "check"), 1,
                                  ("production", "v0.2.0", FIX_PROD), True),
    "check: production older than every release": (_orphaned, None, ("release", "check"), 1,
                                                   ("production", "v0.2.0", FIX_PROD), True),
    "check: moved tag": (_moved_tag, None, ("release", "check"), 1,
                         ("v0.2.0", "moved", "git tag -f -a v0.2.0"), True),
    "check: deleted tag": (_deleted_tag, None, ("release", "check"), 1,
                           ("v0.2.0", "tag is missing", "git tag -a v0.2.0"), True),
    "promote: rewound production": (_rewound, None, ("release", "promote"), 1,
                                    ("v0.2.0", FIX_PROD), True),
    "promote: stray tag": (_stray_tag, None, ("release", "promote"), 1,
                           ("v0.3.0", "git tag -d v0.3.0"), True),
    "promote: dirty tree": (_dirty, None, ("release", "promote"), 1,
                            ("models/small_ridge.toml", "commit or stash"), True),
    "promote: half-done merge": (_half_merged, None, ("release", "promote"), 1,
                                 ("uncommitted changes", "commit or stash"), True),
    "promote: detached HEAD": (_detached, None, ("release", "promote"), 1,
                               ("detached HEAD", "git checkout"), True),
    "promote: unknown candidate": (_nothing, None, ("release", "promote", "--candidate",
                                                    "no-such-branch"), 2,
                                   ("no-such-branch", "git branch"), True),
    "promote: option-like candidate": (_nothing, None, ("release", "promote", "--candidate",
                                                        "--upload-pack=touch x"), 2,
                                       ("--upload-pack", "git branch"), True),
    "promote: sync override": (_nothing, None, ("release", "promote", "--allow", "sync",
                                                "--reason", "x"), 2,
                               ("sync", "cannot be overridden"), True),
    "promote: corrupt ledger manifest": (_nothing, _corrupt_manifest, ("release", "promote"),
                                         2, ("state.db", "damaged", "restore"), True),
    "rollback: rewound production": (_rewound_on_production, None, ("release", "rollback"),
                                     1, ("v0.2.0", "git reset --keep v0.2.0"), True),
    "rollback: wrong branch": (_nothing, None, ("release", "rollback"), 1,
                               ("development", "git checkout production"), True),
    "rollback: unknown version": (_on_production, None, ("release", "rollback", "9.9.9"), 2,
                                  ("v9.9.9", "v0.1.0"), True),
    "rollback: malformed version": (_on_production, None, ("release", "rollback", "../x"), 2,
                                    ("VERSION", "../x"), True),
    "hotfix start: rewound production": (_rewound, None, ("release", "hotfix", "start", "x"),
                                         1, ("v0.2.0", FIX_PROD), True),
    "hotfix start: path in name": (_nothing, None, ("release", "hotfix", "start", "../evil"),
                                   2, ("../evil", "lower-case"), True),
    "hotfix finish: wrong branch": (_nothing, None, ("release", "hotfix", "finish"), 1,
                                    ("development", "git checkout hotfix/"), True),
    "stage: rewound production": (_rewound, None, ("release", "stage"), 1,
                                  ("v0.2.0", FIX_PROD), True),
    "check: missing ledger": (_nothing, _no_ledger, ("release", "check"), 1,
                              ("v0.1.0", "no release-ledger entry", "restore the ledger"),
                              True),
    "log: garbage ledger": (_nothing, _garbage_ledger, ("release", "log"), 2,
                            ("state.db", "damaged", "restore"), True),
    "resume: corrupt pending plan": (_on_production, _corrupt_plan, ("release", "promote"), 2,
                                     ("state.db", "damaged", "restore"), True),
    "run: rewound production": (_rewound_on_production, None, ("run", "--env", "production"),
                                1, ("v0.2.0", FIX_PROD), True),
    "run: publish_environments names no environment": (
        _publishes_nowhere, None, ("run", "--env", "production"), 2,
        ("publish_environments", "nowhere", "production"), True),
    "run: untracked model": (_untracked_model, None, ("run", "--env", "production"), 1,
                             ("models/rogue.toml", "not part of the release"), True),
    "run: ignored model": (_ignored_model, None, ("run", "--env", "production"), 1,
                           ("models/rogue.local.toml", "git-ignored"), True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_release_command_refuses_a_hostile_state(released, tmp_path, ewspipe, case):
    change, state_change, command, code, mentions, state_untouched = CASES[case]
    root = tmp_path / "ws"
    shutil.copytree(released, root)
    change(root / "repo")
    if state_change is not None:
        state_change(root)
    before = _digest(root, state=state_untouched)
    result = ewspipe("--config", root / "repo" / "ewspipe.toml", "--state-dir", root / "state",
                     *command, "--json")
    assert_refused(result, code=code, mentions=mentions, before=before,
                   after=_digest(root, state=state_untouched))
    assert not (root / "state" / "production" / "published").exists()  # nothing published


def test_reading_a_missing_ledger_creates_nothing(released, tmp_path, ewspipe):
    """`release status` and `log` with the ledger database gone: they read it as empty (and
    status lists every tag as unrecorded) instead of creating production's state.db."""
    root = tmp_path / "ws"
    shutil.copytree(released, root)
    _no_ledger(root)
    before = _digest(root, state=True)
    args = ("--config", root / "repo" / "ewspipe.toml", "--state-dir", root / "state")
    status = ewspipe(*args, "release", "status", "--json")
    assert status.code == 0 and any("v0.2.0 has no release-ledger entry" in p
                                    for p in json.loads(status.out)["problems"]), status
    log = ewspipe(*args, "release", "log", "--json")
    assert log.code == 0 and json.loads(log.out) == {"releases": []}, log
    assert _digest(root, state=True) == before
