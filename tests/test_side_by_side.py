"""The side-by-side benchmark comparison: ratios per case, missing cases said, usage on error."""

from __future__ import annotations

from benchmarks.side_by_side import compare, main


def _doc(name: str, wall: float, cpu: float, peak: float, verdict: str = "PASS",
         label: str = "case a") -> dict:
    return {"name": name, "cases": [{
        "label": label, "verdict": verdict, "checked": "ok",
        "wall_s": {"median": wall}, "cpu_s": {"median": cpu}, "peak_rss_mib": {"max": peak}}]}


def test_ratios_are_after_over_before() -> None:
    [row] = compare(_doc("metrics", 2.0, 4.0, 1000), _doc("metrics", 3.0, 2.0, 1500, "FAIL"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["`metrics`", "case a", "2.00", "3.00", "1.50", "4.00", "2.00", "0.50",
                     "1,000", "1,500", "PASS / FAIL"]


def test_a_case_new_in_after_has_no_ratios() -> None:
    [row] = compare(_doc("api", 1, 1, 1), _doc("api", 1, 1, 1, label="new case"))
    assert "| - | - |" in row and row.endswith("- / PASS |")


def test_too_few_arguments_print_the_usage(capsys) -> None:
    assert main(["HEAD"]) == 2
    assert "side_by_side BEFORE AFTER" in capsys.readouterr().err


def test_a_revision_git_does_not_know_is_refused_before_any_worktree(capsys) -> None:
    assert main(["no-such-revision-xyz", "HEAD", "metrics"]) == 2
    assert "'no-such-revision-xyz' is not a commit" in capsys.readouterr().err


def test_a_malformed_benchmark_spec_is_refused(capsys) -> None:
    assert main(["HEAD", "HEAD", "engine:x"]) == 2
    assert "'engine:x': expected NAME or NAME:REPEATS" in capsys.readouterr().err
    assert main(["HEAD", "HEAD", "engine:0"]) == 2

