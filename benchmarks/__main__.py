"""``python -m benchmarks [NAME ...] [--repeats N] [--out DIR]``: run benchmarks, rebuild the page.

Exit codes: 0 every target met, 1 a target missed or a wrong result, 2 bad usage or missing data.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

import benchmarks
from benchmarks.harness import (
    DOC_PATH,
    REPO,
    RESULTS_DIR,
    Benchmark,
    BenchmarkError,
    SetupError,
    load_results,
    run_benchmark,
    write_doc,
    write_result,
)


def discover() -> dict[str, Benchmark]:
    """Every ``BENCHMARKS`` entry of the ``bench_*`` modules: new benchmarks need no registry."""
    found: dict[str, Benchmark] = {}
    for info in sorted(pkgutil.iter_modules(benchmarks.__path__), key=lambda m: m.name):
        if not info.name.startswith("bench_"):
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        for bench in getattr(module, "BENCHMARKS", []):
            if bench.name in found:
                raise BenchmarkError(f"benchmark name {bench.name!r} defined twice")
            found[bench.name] = bench
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run benchmarks; write benchmarks/results/<name>.json and docs/benchmarks.md.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (default: 3)")
    parser.add_argument(
        "--out", type=Path, default=None,
        help="results folder (default: benchmarks/results; any other folder also gets its own "
        "benchmarks.md, so trial runs leave docs/ alone)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--render", action="store_true", help="only rebuild the page from the result JSON"
    )
    return parser


def _display_path(path: Path) -> str:
    """A path for the recorded invocation: repo-relative, never an absolute machine path."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return "<dir>"


def _shown(path: Path) -> str:
    """A path for messages on the terminal: repo-relative when possible."""
    shown = _display_path(path)
    return str(path) if shown == "<dir>" else shown


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    out_dir: Path = args.out or RESULTS_DIR
    doc_path = DOC_PATH if out_dir.resolve() == RESULTS_DIR else out_dir / "benchmarks.md"

    try:
        registry = discover()
        if args.list:
            for bench in registry.values():
                print(f"{bench.name:<16} {bench.title}")
            return 0
        unknown = [n for n in args.names if n not in registry]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(registry)}")
        if not args.render:
            failed = _run(args.names or list(registry), registry, args.repeats, args.out, out_dir)
        else:
            failed = False
        write_doc(load_results(out_dir), doc_path)
        _log(f"wrote {_shown(doc_path)}")
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _run(
    names: list[str], registry: dict[str, Benchmark], repeats: int, out_arg: Path | None,
    out_dir: Path,
) -> bool:
    """Run and record each benchmark; True when any missed its target."""
    failed = False
    for name in names:
        invocation = f".venv/bin/python -m benchmarks {name} --repeats {repeats}"
        if out_arg is not None:
            invocation += f" --out {_display_path(out_arg)}"
        result = run_benchmark(registry[name], repeats, invocation, log=_log)
        path = write_result(result, out_dir)
        for case in result["cases"]:
            wall, rss = case["wall_s"], case["peak_rss_mib"]
            _log(
                f"{name}/{case['label']}: wall median {wall['median']:.2f} s "
                f"(min {wall['min']:.2f}, max {wall['max']:.2f}), peak RSS max "
                f"{rss['max']:.1f} MiB -> {case['verdict']}"
            )
        print(f"{name}: {result['verdict']}  ({_shown(path)})")
        failed = failed or result["verdict"] == "FAIL"
    return failed


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
