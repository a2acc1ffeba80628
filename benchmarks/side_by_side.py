"""``python -m benchmarks.side_by_side BEFORE AFTER NAME[:REPEATS] ...``: run benchmarks at two
revisions of this repository, interleaved, and print the ratios of their figures.

Each revision is checked out into a temporary git worktree and its own benchmarks run there
(its ``src`` first on ``PYTHONPATH``, this interpreter and its venv), writing their results
to a temporary folder, never to ``docs/benchmarks.md``. The two revisions take turns benchmark
by benchmark (before, after, before, after ...), so both run under the same load; on a shared
machine compare the ratios, not the seconds. The table gives each case's median wall and CPU
seconds, its peak RSS and both verdicts; each case's own check line (latencies, rows/s) is
printed below it.

Example (the issue-21 check: is any earlier benchmark slower than before?)::

    .venv/bin/python -m benchmarks.side_by_side 71328da HEAD metrics import_pgm \\
        features_pgm reconcile api engine:1 monthly:1
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO

__all__ = ["compare", "main"]


def _run(worktree: Path, name: str, repeats: int, out: Path, log: Path) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(worktree / "src"), str(worktree)])
    with log.open("w") as fh:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks", name, "--repeats", str(repeats), "--out",
             str(out)], cwd=worktree, env=env, stdout=fh, stderr=subprocess.STDOUT,
            check=False).returncode


def _check(revisions: list[str], specs: list[str]) -> str | None:
    """What is wrong with the arguments, before any worktree is made (None: nothing)."""
    for rev in revisions:
        found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet",
                                f"{rev}^{{commit}}"], capture_output=True, check=False)
        if found.returncode != 0:
            return f"{rev!r} is not a commit of {REPO.name}; give a revision git knows"
    for spec in specs:
        name, sep, repeats = spec.partition(":")
        if not name or (sep and not (repeats.isdigit() and int(repeats) >= 1)):
            return (f"{spec!r}: expected NAME or NAME:REPEATS with REPEATS a whole number "
                    ">= 1 (names: python -m benchmarks --list)")
    return None


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Markdown rows (one per case of ``after``) comparing two result documents."""
    cases = {c["label"]: c for c in before.get("cases", [])}
    rows = []
    for case in after.get("cases", []):
        old = cases.get(case["label"])
        figures = "| - | - | - | - | - | - | - | - "
        if old and case.get("wall_s") and old.get("wall_s"):
            ow, nw = old["wall_s"]["median"], case["wall_s"]["median"]
            oc, nc = old["cpu_s"]["median"], case["cpu_s"]["median"]
            figures = (f"| {ow:.2f} | {nw:.2f} | {nw / ow:.2f} | {oc:.2f} | {nc:.2f} | "
                       f"{nc / oc:.2f} | {old['peak_rss_mib']['max']:,.0f} | "
                       f"{case['peak_rss_mib']['max']:,.0f} ")
        verdicts = f"{old['verdict'] if old else '-'} / {case['verdict']}"
        rows.append(f"| `{after['name']}` | {case['label']} {figures}| {verdicts} |")
    return rows


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    revisions, specs = argv[:2], argv[2:]
    problem = _check(revisions, specs)
    if problem:
        print(f"side_by_side: {problem}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="ewspipe-side-by-side-"))
    trees = {}
    try:
        for side, rev in zip(("before", "after"), revisions, strict=True):
            trees[side] = work / side
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q",
                            str(trees[side]), rev], check=True)
        lines = ["| benchmark | case | wall before (s) | wall after (s) | after/before | "
                 "CPU before (s) | CPU after (s) | after/before | peak before (MiB) | "
                 "peak after (MiB) | verdict before / after |",
                 "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        checks = []
        for spec in specs:
            name, _, repeats = spec.partition(":")
            docs = {}
            for side in ("before", "after"):
                out = work / "results" / side
                out.mkdir(parents=True, exist_ok=True)
                code = _run(trees[side], name, int(repeats or 3), out,
                            work / f"{side}-{name}.log")
                path = out / f"{name}.json"
                if not path.is_file():
                    print(f"{name} at {side} ({revisions[side == 'after']}) wrote no result "
                          f"(exit {code}); see {work / f'{side}-{name}.log'}", file=sys.stderr)
                    return 1
                docs[side] = json.loads(path.read_text())
                print(f"{name} at {side}: {docs[side]['verdict']}", file=sys.stderr)
            lines += compare(docs["before"], docs["after"])
            for case in docs["after"]["cases"]:
                old = next((c for c in docs["before"]["cases"]
                            if c["label"] == case["label"]), None)
                checks.append(f"* `{name}` / {case['label']}: before: "
                              f"{old['checked'] if old else '-'}; after: {case['checked']}")
        print(f"Revisions: before {revisions[0]}, after {revisions[1]}; "
              f"`python -m benchmarks.side_by_side {' '.join(argv)}`\n")
        print("\n".join(lines))
        print()
        print("\n".join(checks))
        return 0
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(tree)], check=False)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
