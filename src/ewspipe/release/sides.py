"""One side of a staging comparison (candidate or production): its checked-out tree, its own
state folder, and the ewspipe commands run there as child processes.

Code isolation: each command runs ``python -m ewspipe`` with the worktree as working folder
and, when the tree carries its own package (``src/ewspipe``), ``PYTHONPATH=<tree>/src`` so the
side's own code runs; a product repository with only models, ensembles and ``ewspipe.toml``
runs the installed package. Settings: production's ``ewspipe.toml`` for both sides, written
into the tree with only the keys that never shape a result changed (no MLflow, no webhook or
e-mail, no shared state database, nothing published). Data: the chosen snapshots are
hard-linked (copied where links are impossible) into the side's own snapshot folder, so the
run sees exactly them and nothing is ever written into the shared store.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit

from ewspipe.atomic import atomic_dir, write_text
from ewspipe.errors import InputError

__all__ = ["STAGING_ENV", "CommandResult", "Side", "die_with_parent", "settings_text",
           "snapshot_key"]

STAGING_ENV = "staging"
CONFIG_NAME = ".ewspipe-staging.toml"


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a staging child, before it runs: ask Linux to send it SIGTERM when the staging
    process dies, so a staging killed with SIGKILL leaves no side run behind writing to the
    staging state (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return


def snapshot_key(snapshots: dict[str, str]) -> str:
    """Short, file-name-safe label of the snapshot ids (``cm-1a2b3c4d_pgm-...``)."""
    return "_".join(f"{lvl}-{sid.split('-', 1)[-1][:8]}" for lvl, sid in sorted(snapshots.items()))


def settings_text(production_toml: str | None) -> str:
    """Production's ewspipe.toml with the isolating changes (see the module docstring)."""
    try:
        doc = tomlkit.parse(production_toml or "")
    except Exception as exc:  # tomlkit raises its own ParseError family
        raise InputError(f"production's ewspipe.toml is not valid TOML ({exc}); fix it on the "
                         "production branch") from exc
    doc.setdefault("tracking", tomlkit.table())["enabled"] = False
    alerts = doc.setdefault("alerts", tomlkit.table())
    for sink in ("webhook", "email"):
        alerts.setdefault(sink, tomlkit.table())["enabled"] = False
    run = doc.setdefault("run", tomlkit.table())
    envs = list(run.get("environments", ["development", STAGING_ENV, "production"]))
    run["environments"] = envs if STAGING_ENV in envs else [*envs, STAGING_ENV]
    run["environment"] = STAGING_ENV
    run["publish_environments"] = []
    run["state_url"] = ""
    run["demo_when_empty"] = False
    run["executor"] = "local"
    run["lock_timeout_seconds"] = 3600
    return tomlkit.dumps(doc)


@dataclass(frozen=True)
class CommandResult:
    """A finished child command: exit code, parsed JSON (None if stdout was not JSON)."""

    args: tuple[str, ...]
    returncode: int
    doc: dict[str, Any] | None
    stderr: str

    def error(self) -> str:
        """What went wrong, in one paragraph (the JSON error, else stderr's tail)."""
        if self.doc and "error" in self.doc:
            return str(self.doc["error"])
        tail = [line for line in self.stderr.strip().splitlines() if line][-8:]
        return "\n".join(tail) or f"exit code {self.returncode}"

    def to_dict(self) -> dict[str, Any]:
        return {"command": "ewspipe " + " ".join(self.args), "exit_code": self.returncode}


@dataclass(frozen=True)
class Side:
    """``name`` (candidate / production) of ``commit`` checked out at ``tree``, with its own
    state folder ``state`` (reused across stagings of the same commit, settings and data)."""

    name: str
    commit: str
    tree: Path
    state: Path

    @property
    def own_code(self) -> bool:
        return (self.tree / "src" / "ewspipe" / "__init__.py").is_file()

    @property
    def config(self) -> Path:
        return self.tree / CONFIG_NAME

    @property
    def env_state(self) -> Path:
        return self.state / STAGING_ENV

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("EWSPIPE_CONFIG", "EWSPIPE_STATE_DIR")}
        if self.own_code:
            rest = env.get("PYTHONPATH")
            env["PYTHONPATH"] = str(self.tree / "src") + (os.pathsep + rest if rest else "")
        return env

    def prepare(self, config_text: str, snapshots: dict[str, str], store: Path,
                artifacts: Path) -> None:
        """Write the staging settings into the tree, link the snapshots into ``state`` and
        point its artifact stores at the shared ones under ``artifacts``.

        Artifacts are content-addressed (model, config hash, snapshot, cut-off and the code
        fingerprint), so sides running the same code share every unchanged model's
        artifacts, and a side with its own code never matches another's."""
        self.config.write_text(config_text, encoding="utf-8")
        # one artifact cache for evaluate/forecast and the monthly run (settings.artifact_dir),
        # also reachable where staging reads the monthly run's (env_state/artifacts)
        for link, shared in ((self.state / "artifacts", artifacts / "monthly"),
                             (self.env_state / "artifacts", artifacts / "monthly")):
            shared.mkdir(parents=True, exist_ok=True)
            if not link.exists() and not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(shared, target_is_directory=True)
        target = self.state / "snapshots"
        for sid in snapshots.values():
            dest = target / sid
            if dest.is_dir():
                continue
            try:
                with atomic_dir(dest) as tmp:
                    for src in (store / sid).iterdir():
                        try:
                            os.link(src, tmp / src.name)
                        except OSError:  # another file system: a copy leaves the store as is
                            shutil.copy2(src, tmp / src.name)
            except FileExistsError:  # another process linked it meanwhile: same content
                pass

    def ewspipe(self, *args: str, timeout: float) -> CommandResult:
        """``python -m ewspipe --config <staging settings> --state-dir <state> ARGS --json``."""
        cmd = [sys.executable, "-m", "ewspipe", "--config", str(self.config), "--state-dir",
               str(self.state), *args, "--json"]
        try:
            done = subprocess.run(cmd, cwd=self.tree, env=self.env(), capture_output=True,
                                  text=True, timeout=timeout, check=False,
                                  preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired as exc:
            return CommandResult(tuple(args), -1, None, f"timed out after {timeout:.0f} s "
                                 f"({exc.stderr or ''})")
        try:
            doc = json.loads(done.stdout) if done.stdout.strip() else None
        except json.JSONDecodeError:
            doc = None
        return CommandResult(tuple(args), done.returncode,
                             doc if isinstance(doc, dict) else None, done.stderr)

    def run_command(self, command: list[str], *, timeout: float) -> CommandResult:
        """An arbitrary command (the side's test suite) in the tree with the side's code."""
        try:
            done = subprocess.run(command, cwd=self.tree, env=self.env(), capture_output=True,
                                  text=True, timeout=timeout, check=False,
                                  preexec_fn=die_with_parent)
        except subprocess.TimeoutExpired:
            return CommandResult(tuple(command), -1, None, f"timed out after {timeout:.0f} s")
        except OSError as exc:
            return CommandResult(tuple(command), -1, None, f"cannot start: {exc}")
        return CommandResult(tuple(command), done.returncode, None,
                             (done.stdout + "\n" + done.stderr).strip())

    # ------------------------------------------------------------------ cached documents
    def cached(self, name: str) -> dict[str, Any] | None:
        path = self.state / "cache" / f"{name}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def cache(self, name: str, doc: dict[str, Any]) -> None:
        path = self.state / "cache" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(doc, default=str))


def side_state(root: Path, commit: str, config_text: str, snapshots: dict[str, str]) -> Path:
    """``<root>/<commit[:12]>_<settings hash[:8]>_<snapshots>``: one state per commit, settings
    and data, so a re-stage of the same commit reuses its runs and evaluations."""
    digest = hashlib.sha256(config_text.encode()).hexdigest()[:8]
    return root / f"{commit[:12]}_{digest}_{snapshot_key(snapshots)}"


def production_toml_ok(text: str | None) -> None:
    """Refuse production settings that are not TOML before any child process starts."""
    if text is None:
        return
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"production's ewspipe.toml is not valid TOML ({exc}); fix it on "
                         "the production branch") from exc
