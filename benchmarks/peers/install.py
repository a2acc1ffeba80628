"""Install the VIEWS peer packages on demand, each into a virtualenv of its own.

The peers are not dependencies of ewspipe: they pin old pandas/numpy (views-stepshifter wants
numpy < 2 and pandas < 2, ewspipe numpy >= 2 and pandas >= 3), so each lives in
``benchmarks/peers/.venvs/<peer>`` (git-ignored), built with ``python -m venv`` from the
interpreter running the benchmarks and filled by ``pip install <peer>==<version>`` from the
package registry. A stamp file records what was asked; an unchanged request reuses the venv.

views-stepshifter imports ``torch`` (through darts and for a device check). The PyPI torch
wheel for Linux drags ~3 GiB of CUDA libraries along; when pip's configured ``find-links``
folders hold a CPU-only torch wheel (``torch-*+cpu-*.whl``), it is pinned by a constraint so
that one is used instead. The peers' results do not depend on it: their learners run on CPU.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PEERS", "VENVS", "Peer", "PeerUnavailable", "ensure", "installed_versions"]

VENVS = Path(__file__).resolve().parent / ".venvs"
INSTALL_TIMEOUT_S = 3600.0
_STAMP = ".peer-install.json"


class PeerUnavailable(Exception):
    """The peer cannot be installed or started here; the message says exactly why."""


@dataclass(frozen=True)
class Peer:
    """One peer package: what to install and which versions to report."""

    name: str
    requirement: str
    report: tuple[str, ...]  # distributions whose versions go into the results
    cpu_torch: bool = False  # pin a local CPU-only torch wheel when one is available


PEERS: dict[str, Peer] = {
    "views-evaluation": Peer(
        "views-evaluation", "views-evaluation==2.0.0", ("views-evaluation", "numpy", "scipy")
    ),
    "views-baseline": Peer(
        "views-baseline", "views-baseline==1.0.2",
        ("views-baseline", "views-frames", "numpy", "pandas"),
    ),
    "views-stepshifter": Peer(
        "views-stepshifter", "views-stepshifter==1.4.0",
        ("views-stepshifter", "darts", "lightgbm", "numpy", "pandas", "scikit-learn", "torch"),
        cpu_torch=True,
    ),
}


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _pip_find_links(python: Path) -> list[Path]:
    """The find-links folders pip is configured with (pip.conf or PIP_FIND_LINKS)."""
    proc = subprocess.run([str(python), "-m", "pip", "config", "list"], capture_output=True,
                          text=True, timeout=120, check=False)
    folders: list[Path] = []
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith("find-links"):
            for item in value.strip().strip("'\"").split():
                path = Path(item.removeprefix("file://"))
                if path.is_dir() and path not in folders:
                    folders.append(path)
    return folders


def _cpu_torch_constraint(python: Path) -> str | None:
    """``torch==<v>+cpu`` for the newest local CPU-only torch wheel for this interpreter."""
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    found: list[str] = []
    for folder in _pip_find_links(python):
        for wheel in folder.glob(f"torch-*+cpu-{tag}-{tag}-*linux*_x86_64.whl"):
            match = re.match(r"torch-([^-]+\+cpu)-", wheel.name)
            if match:
                found.append(match.group(1))
    if not found:
        return None

    def key(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0]))

    return f"torch=={max(found, key=key)}"


def _run(cmd: list[str], log: Path, timeout: float) -> None:
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False, env={**os.environ, "PIP_NO_INPUT": "1"})
        except subprocess.TimeoutExpired as exc:
            raise PeerUnavailable(f"`{' '.join(cmd[-3:])}` timed out after {timeout:.0f} s "
                                  f"(log: {log})") from exc
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").strip().splitlines()[-12:])
        raise PeerUnavailable(f"`{' '.join(cmd[2:])}` failed (exit {proc.returncode}):\n{tail}")


def installed_versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    """Versions of ``names`` inside a peer venv (``not installed`` when absent)."""
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: out[n] = 'not installed'\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode != 0:
        raise PeerUnavailable(f"the peer interpreter does not start: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def ensure(name: str, log: Callable[[str], None] = print) -> tuple[Path, dict[str, str]]:
    """The peer venv's python and the versions it holds; installs the peer first if needed.

    Raises:
        PeerUnavailable: the venv cannot be built or pip cannot install the peer here.
    """
    peer = PEERS[name]
    venv = VENVS / name
    python = _venv_python(venv)
    constraints = [c for c in [_cpu_torch_constraint(Path(sys.executable))] if c] \
        if peer.cpu_torch else []
    wanted = {"requirement": peer.requirement, "constraints": constraints,
              "python": sys.version.split()[0]}
    stamp = venv / _STAMP
    if python.is_file() and stamp.is_file():
        try:
            if json.loads(stamp.read_text(encoding="utf-8")) == wanted:
                return python, installed_versions(python, peer.report)
        except ValueError:
            pass
    VENVS.mkdir(parents=True, exist_ok=True)
    install_log = VENVS / f"{name}.install.log"
    install_log.write_text("", encoding="utf-8")
    log(f"installing peer {peer.requirement} into {venv.relative_to(VENVS.parents[2])} "
        f"(log: {install_log.name}); this runs once")
    stamp.unlink(missing_ok=True)
    _run([sys.executable, "-m", "venv", "--clear", str(venv)], install_log, 600)
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"]
    _run(cmd, install_log, 600)
    cmd = [str(python), "-m", "pip", "install", "--quiet", peer.requirement]
    if constraints:
        constraint_file = venv / "peer-constraints.txt"
        constraint_file.write_text("\n".join(constraints) + "\n", encoding="utf-8")
        cmd += ["--constraint", str(constraint_file)]
    _run(cmd, install_log, INSTALL_TIMEOUT_S)
    versions = installed_versions(python, peer.report)
    stamp.write_text(json.dumps(wanted, indent=2) + "\n", encoding="utf-8")
    log(f"installed {peer.requirement}: "
        + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return python, versions
