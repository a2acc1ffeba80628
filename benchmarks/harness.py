"""Benchmark harness: isolated subprocess measurements, result JSON and the docs/benchmarks.md page.

Every run goes through a fresh ``python -c`` wrapper that starts the command, times it and reads
``getrusage(RUSAGE_CHILDREN)``: the peak RSS then belongs to that one command, not to earlier runs
or to this process. Outputs hold no hostnames or absolute paths, so results can be committed.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "DOC_PATH",
    "REPO",
    "RESULTS_DIR",
    "Benchmark",
    "BenchmarkError",
    "Case",
    "Run",
    "SetupError",
    "Target",
    "VerificationError",
    "ewspipe_command",
    "load_results",
    "machine_description",
    "measure",
    "render_doc",
    "run_benchmark",
    "shared_dir",
    "write_doc",
    "write_result",
]

REPO = Path(__file__).resolve().parents[1]
# the shared data files the benchmarks read, relative to the shared folder (shared_dir())
CM_FILE = "data/views_ged_cm/views_fat002_ged_sb_cm.parquet"
PGM_FILE = "data/pgm_semisynthetic/pgm_ged_sb.parquet"
RESULTS_DIR = REPO / "benchmarks" / "results"
DOC_PATH = REPO / "docs" / "benchmarks.md"
SCHEMA_VERSION = 1
DEFAULT_TIMEOUT_S = 600.0
KEY_PACKAGES = ("ewspipe", "numpy", "pandas", "pyarrow")
MIB = 1024.0

# Runs in a fresh interpreter per measurement: argv = [result_file, timeout_s, *command].
# Only the command is timed; its stdout/stderr pass straight through to our pipes.
_WRAPPER = """\
import json, resource, subprocess, sys, time
out, timeout, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
t0 = time.perf_counter()
rc = subprocess.call(cmd, timeout=timeout)
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as fh:
    json.dump({"returncode": rc, "wall_s": wall, "maxrss_kib": ru.ru_maxrss,
               "cpu_s": ru.ru_utime + ru.ru_stime}, fh)
"""


class BenchmarkError(Exception):
    """A benchmark could not produce trustworthy numbers."""


class SetupError(BenchmarkError):
    """Something the benchmark needs (data, executable) is missing; nothing was measured."""


class VerificationError(BenchmarkError):
    """The measured command failed or printed a wrong result, so its timing means nothing."""


def child_document(stdout: str) -> dict[str, Any]:
    """The one JSON document a benchmark child prints; VerificationError if it printed none."""
    try:
        doc: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise VerificationError(f"the child printed no JSON document: {exc}") from exc
    return doc


@dataclass(frozen=True)
class Target:
    """Upper bounds from the issue; a case passes when its worst run stays within both."""

    wall_s: float | None = None
    peak_rss_mib: float | None = None

    def describe(self) -> str:
        parts = []
        if self.wall_s is not None:
            parts.append(f"≤ {self.wall_s:g} s")
        if self.peak_rss_mib is not None:
            parts.append(f"≤ {self.peak_rss_mib:g} MiB")
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class Case:
    """One measured command; ``argv`` gets a fresh empty directory per run (cwd and state)."""

    label: str
    display: str  # the command as documented, with <placeholders> instead of machine paths
    argv: Callable[[Path], list[str]]
    verify: Callable[[str], str]  # child stdout -> what was checked; raises VerificationError
    target: Target | None = None
    note: str = ""
    # A target the child measures itself (a ratio, one call's time): stdout -> met? A miss
    # makes the case FAIL with its numbers recorded, instead of aborting like a wrong result.
    met: Callable[[str], bool] | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S  # per run; a global-scale run may need more


@dataclass(frozen=True)
class Benchmark:
    """A named group of cases; ``cases`` is lazy so ``--list`` works without the data."""

    name: str
    title: str
    description: str
    cases: Callable[[], list[Case]]


@dataclass(frozen=True)
class Run:
    """One isolated execution of a command."""

    returncode: int
    wall_s: float
    peak_rss_mib: float
    cpu_s: float
    stdout: str
    stderr: str


def shared_dir() -> Path:
    """The shared data folder: $EWSPIPE_SHARED_DIR or <repo>/../shared, holding data/."""
    root = Path(os.environ.get("EWSPIPE_SHARED_DIR") or REPO.parent / "shared")
    if not (root / "data").is_dir():
        raise SetupError(
            f"shared data folder not found: {root / 'data'} does not exist. Set "
            "EWSPIPE_SHARED_DIR to the folder that holds data/ (default: <repo>/../shared)."
        )
    return root


def ewspipe_command() -> list[str]:
    """The ewspipe CLI of the interpreter running the benchmarks (the project venv)."""
    exe = Path(sys.executable).parent / "ewspipe"
    if not exe.is_file():
        raise SetupError(
            f"{exe.name} not found next to {Path(sys.executable).name}; run the benchmarks "
            "with the project venv: .venv/bin/python -m benchmarks (or `make bench`)."
        )
    return [str(exe)]


def _child_env() -> dict[str, str]:
    """Our environment minus settings that would point the CLI at a user's workspace."""
    env = dict(os.environ)
    for key in ("EWSPIPE_CONFIG", "EWSPIPE_STATE_DIR"):
        env.pop(key, None)
    return env


def measure(
    argv: Sequence[str], cwd: Path, timeout_s: float = DEFAULT_TIMEOUT_S
) -> Run:
    """Run ``argv`` once through a fresh wrapper interpreter; wall time and peak RSS of it alone."""
    result_file = cwd / ".measurement.json"
    wrapper = [sys.executable, "-I", "-c", _WRAPPER, str(result_file), str(timeout_s), *argv]
    proc = subprocess.run(
        wrapper, cwd=cwd, env=_child_env(), capture_output=True, text=True,
        timeout=timeout_s + 60, check=False,
    )
    if proc.returncode != 0 or not result_file.is_file():
        raise VerificationError(
            f"measurement wrapper failed (exit {proc.returncode}): {_tail(proc.stderr)}"
        )
    raw = json.loads(result_file.read_text(encoding="utf-8"))
    result_file.unlink()
    return Run(
        returncode=int(raw["returncode"]),
        wall_s=float(raw["wall_s"]),
        peak_rss_mib=float(raw["maxrss_kib"]) / MIB,  # Linux reports KiB
        cpu_s=float(raw["cpu_s"]),
        stdout=proc.stdout,
        stderr=proc.stderr,
    )


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def _stats(values: Sequence[float], digits: int) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def _verdict(target: Target | None, walls: Sequence[float], rss: Sequence[float]) -> str:
    """PASS only if the worst run meets every bound: a target is a ceiling, not an average."""
    if target is None:
        return "n/a"
    ok = (target.wall_s is None or max(walls) <= target.wall_s) and (
        target.peak_rss_mib is None or max(rss) <= target.peak_rss_mib
    )
    return "PASS" if ok else "FAIL"


def _run_case(
    bench: str, case: Case, repeats: int, log: Callable[[str], None]
) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    checked = ""
    inner_met = True
    for i in range(1, repeats + 1):
        with tempfile.TemporaryDirectory(prefix="ewspipe-bench-") as tmp:
            run_dir = Path(tmp)
            run = measure(case.argv(run_dir), cwd=run_dir, timeout_s=case.timeout_s)
        if run.returncode != 0:
            raise VerificationError(
                f"{bench}/{case.label}: command exited {run.returncode}:\n{_tail(run.stderr)}"
            )
        try:
            checked = case.verify(run.stdout)
        except VerificationError as exc:
            raise VerificationError(f"{bench}/{case.label}: wrong result: {exc}") from exc
        if case.met is not None:
            inner_met = case.met(run.stdout) and inner_met
        record = {
            "wall_s": round(run.wall_s, 3),
            "cpu_s": round(run.cpu_s, 3),
            "peak_rss_mib": round(run.peak_rss_mib, 1),
        }
        runs.append(record)
        log(
            f"{bench}/{case.label} run {i}/{repeats}: {record['wall_s']:.2f} s wall, "
            f"{record['cpu_s']:.2f} s cpu, {record['peak_rss_mib']:.1f} MiB peak RSS"
        )
    walls = [r["wall_s"] for r in runs]
    rss = [r["peak_rss_mib"] for r in runs]
    target = case.target
    return {
        "label": case.label,
        "command": case.display,
        "note": case.note,
        "checked": checked,
        "target": None
        if target is None
        else {"wall_s": target.wall_s, "peak_rss_mib": target.peak_rss_mib},
        "verdict": "FAIL" if not inner_met else _verdict(target, walls, rss)
        if target is not None or case.met is None else "PASS",
        "wall_s": _stats(walls, 3),
        "cpu_s": _stats([r["cpu_s"] for r in runs], 3),
        "peak_rss_mib": _stats(rss, 1),
        "runs": runs,
    }


def run_benchmark(
    bench: Benchmark, repeats: int, invocation: str, log: Callable[[str], None]
) -> dict[str, Any]:
    """Measure every case ``repeats`` times; returns the JSON-ready result document."""
    cases = [_run_case(bench.name, case, repeats, log) for case in bench.cases()]
    verdicts = {c["verdict"] for c in cases}
    verdict = "FAIL" if "FAIL" in verdicts else "PASS" if "PASS" in verdicts else "n/a"
    return {
        "schema": SCHEMA_VERSION,
        "name": bench.name,
        "title": bench.title,
        "description": bench.description,
        "invocation": invocation,
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_revision": git_revision(),
        "repeats": repeats,
        "verdict": verdict,
        "machine": machine_description(),
        "cases": cases,
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_total_gib() -> float | None:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / MIB / MIB, 1)  # kB -> GiB
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_description() -> dict[str, Any]:
    """What the numbers depend on, without hostnames or paths."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_total_gib": _mem_total_gib(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in KEY_PACKAGES},
    }


# what the benchmarks write themselves: changes there do not make the measured code dirty
_OWN_OUTPUTS = ("benchmarks/results/", "docs/benchmarks.md")


def git_revision() -> str | None:
    """Short commit of the measured tree, '-dirty' when it had uncommitted changes (other
    than the result files and page a benchmark run itself rewrites)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10, check=False)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=REPO, capture_output=True, text=True, timeout=10,
                                check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    if not commit:
        return None
    changed = [line[3:] for line in status.stdout.splitlines()
               if not line[3:].startswith(_OWN_OUTPUTS)]
    return f"{commit}-dirty" if changed else commit


def write_result(result: dict[str, Any], out_dir: Path) -> Path:
    """Write ``<out_dir>/<name>.json`` atomically (``*.tmp`` is git-ignored)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result['name']}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def load_results(out_dir: Path) -> list[dict[str, Any]]:
    """Every result JSON in ``out_dir``, by name: the page is rebuilt from all of them."""
    results = []
    for path in sorted(out_dir.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("schema") != SCHEMA_VERSION:
            raise BenchmarkError(f"{path.name}: unknown result schema {doc.get('schema')!r}")
        results.append(doc)
    return results


# --- docs/benchmarks.md -------------------------------------------------------------------

_HEADER = """\
# Benchmarks

<!-- Generated by `python -m benchmarks` from benchmarks/results/*.json; do not edit by hand.
     To change the text, edit benchmarks/harness.py; to refresh a section, rerun its benchmark. -->

Speed and memory targets are checked here, never in timed unit tests. Each section below is
rendered from one `benchmarks/results/<name>.json`; rerunning a benchmark rewrites its JSON and
rebuilds this page from all result files.

## How to run

```sh
make bench                                      # every benchmark, 3 repeats each
.venv/bin/python -m benchmarks import_pgm       # one benchmark (names: --list)
.venv/bin/python -m benchmarks import_pgm --repeats 5
.venv/bin/python -m benchmarks --render         # rebuild this page from the result JSON only
.venv/bin/python -m benchmarks --out /tmp/bench # trial run: JSON and page go to /tmp/bench
# two revisions in temporary worktrees, taking turns: a table of after/before ratios
.venv/bin/python -m benchmarks.side_by_side 71328da HEAD metrics api engine:1
```

Run from the repository root. The data benchmarks need the shared data folder:
`$EWSPIPE_SHARED_DIR`, or `../shared` next to the repository (it holds `data/`).
The command exits 1 if a target is missed or a command prints a wrong result.

## Method

* Each run starts a fresh `python -c` wrapper that runs the command with `subprocess`, times it
  with `time.perf_counter()` and reads `resource.getrusage(RUSAGE_CHILDREN)`. Peak RSS is the
  command's own high-water mark, so runs do not pollute each other. It includes a floor of
  about 10 MiB from the wrapper interpreter that forked the command.
* Every run gets a new empty temporary directory as its working and state directory,
  with `EWSPIPE_CONFIG` and `EWSPIPE_STATE_DIR` unset: the built-in settings, and no snapshot is
  ever already present. Input files are read through the page cache, which is warm after
  the first run.
* Every run's output is checked (rows, totals, validation). A wrong result aborts the benchmark
  instead of recording a time.
* Verdict: **PASS** when the *worst* run meets every bound of the target (a target is a ceiling,
  not an average); `n/a` for context cases without a target.
"""


def _machine_lines(machine: dict[str, Any]) -> list[str]:
    packages = ", ".join(f"{k} {v}" for k, v in machine.get("packages", {}).items())
    return [
        f"* CPU: {machine.get('cpu_model')}, {machine.get('cpu_count')} logical cores",
        f"* Memory: {machine.get('memory_total_gib')} GiB",
        f"* OS: {machine.get('os')}",
        f"* Python {machine.get('python')}; {packages}",
    ]


def _fmt(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def render_section(result: dict[str, Any], show_machine: bool) -> str:
    """One benchmark's section: summary line, table, then the commands and what was checked."""
    lines = [
        f"## `{result['name']}`: {result['title']}",
        "",
        result["description"],
        "",
        f"Verdict: **{result['verdict']}**. Measured {result['measured_at']} at revision "
        f"`{result.get('git_revision') or 'unknown'}`, {result['repeats']} runs per case, by:",
        "",
        f"```sh\n{result['invocation']}\n```",
        "",
    ]
    if show_machine:
        lines += ["Machine:", "", *_machine_lines(result["machine"]), ""]
    lines += [
        "| case | wall median (s) | wall min (s) | wall max (s) | peak RSS max (MiB) "
        "| CPU median (s) | target | verdict |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for case in result["cases"]:
        target = case["target"]
        target_text = Target(**target).describe() if target else "none (context)"
        wall, rss, cpu = case["wall_s"], case["peak_rss_mib"], case["cpu_s"]
        lines.append(
            f"| {case['label']} | {_fmt(wall['median'], 2)} | {_fmt(wall['min'], 2)} | "
            f"{_fmt(wall['max'], 2)} | {_fmt(rss['max'], 0)} | {_fmt(cpu['median'], 2)} | "
            f"{target_text} | {case['verdict']} |"
        )
    lines.append("")
    for case in result["cases"]:
        runs = ", ".join(
            f"{r['wall_s']:.2f} s / {r['peak_rss_mib']:.0f} MiB" for r in case["runs"]
        )
        lines += [f"**{case['label']}**: {case['note']}".rstrip(), "", "```sh", case["command"],
                  "```", ""]
        checked = case["checked"]
        if "\n" in checked:  # a multi-line account (e.g. a Markdown table) stands on its own
            lines += [f"Runs: {runs}. Checked every run:", "", checked, ""]
        else:
            lines += [f"Checked every run: {checked}. Runs: {runs}.", ""]
    return "\n".join(lines)


def render_doc(results: Sequence[dict[str, Any]]) -> str:
    """The whole page; the machine is listed once when every result shares it."""
    machines = {json.dumps(r["machine"], sort_keys=True) for r in results}
    shared_machine = len(machines) == 1
    parts = [_HEADER]
    if shared_machine:
        parts.append("\n".join(["## Machine", "", *_machine_lines(results[0]["machine"]), ""]))
    elif not results:
        parts.append("No results yet: run `make bench`.\n")
    parts += [render_section(r, show_machine=not shared_machine) for r in results]
    return "\n".join(parts).rstrip() + "\n"


def write_doc(results: Sequence[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_doc(results), encoding="utf-8")
    return path


class TreeRss:
    """Peak RSS summed over a process and all its descendants (a Dask cluster's workers too),
    sampled every ``every_s`` seconds in a thread; ``peak_at`` is when the peak was seen."""

    def __init__(self, pid: int, *, every_s: float = 0.2) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self._every_s = every_s
        self.peak = 0
        self.peak_at = time.time()  # epoch seconds
        self.most_processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):  # ended between listing and reading
                    total += p.memory_info().rss
            if total > self.peak:
                self.peak, self.peak_at = total, time.time()
            self.most_processes = max(self.most_processes, len(procs))
            self._stop.wait(self._every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
