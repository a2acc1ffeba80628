"""The progress reporter: quiet by default, plain lines off a terminal, Rich bars on one."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

from ewspipe import progress
from ewspipe.progress import (
    LineReporter,
    NullReporter,
    RichReporter,
    current,
    for_stream,
    reporting,
)


@dataclass
class Record:
    task: str
    seconds: float = 0.5


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_library_is_quiet_unless_a_reporter_is_installed():
    assert isinstance(current(), NullReporter)
    lines = LineReporter(io.StringIO())
    with reporting(lines) as installed:
        assert current() is installed is lines
    assert isinstance(current(), NullReporter)


def test_quiet_gives_nothing_even_on_a_terminal():
    assert isinstance(for_stream(Terminal(), quiet=True), NullReporter)
    assert isinstance(for_stream(io.StringIO(), quiet=True), NullReporter)


def test_not_a_terminal_gives_one_plain_line_per_event():
    out = io.StringIO()
    reporter = for_stream(out)
    assert isinstance(reporter, LineReporter)
    reporter.task("started", Record("fit:a"), 0, 2)
    reporter.task("ran", Record("fit:a"), 1, 2)
    reporter.task("failed", Record("predict:a"), 1, 2)
    for i in (1, 2):
        reporter.step("predict a", i, 2, f"origin {443 + i}")
    reporter.note("trial #0 (1/4): 0.5")
    assert out.getvalue().splitlines() == [
        "[  0/2] start  fit:a", "[  1/2] ran    fit:a (0.50s)", "[  1/2] FAILED predict:a",
        "      predict a: origin 444 (1/2)", "      predict a: origin 445 (2/2)",
        "trial #0 (1/4): 0.5"]
    assert "\r" not in out.getvalue()


def test_plain_transfers_say_each_tenth_not_each_chunk():
    out = io.StringIO()
    reporter = LineReporter(out)
    for done in range(0, 1_000_001, 1_000):  # a thousand chunks
        reporter.transfer("download ged.zip", done, 1_000_000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # 0%, 10%, ..., 100%
    assert lines[-1] == "      download ged.zip: 1.0 MB of 1.0 MB (100%) done"


def test_plain_transfers_without_a_total_say_every_block_and_the_end():
    out = io.StringIO()
    reporter = LineReporter(out)
    step = progress.UNKNOWN_TOTAL_EVERY // 4
    for done in range(step, 3 * progress.UNKNOWN_TOTAL_EVERY, step):
        reporter.transfer("download x", done, None)
    end = 3 * progress.UNKNOWN_TOTAL_EVERY
    reporter.transfer("download x", end, end)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # block 0, 1, 2 and the end
    assert lines[-1].endswith("done")


def test_lines_from_threads_do_not_interleave():
    out = io.StringIO()
    reporter = LineReporter(out)

    def work(name: str) -> None:
        for i in range(1, 201):
            reporter.step(f"predict {name}", i, 200)

    threads = [threading.Thread(target=work, args=(n,)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().splitlines()
    assert len(lines) == 800
    assert all(line.startswith("      predict ") and line.endswith("/200)") for line in lines)


def test_a_terminal_gets_rich_bars_and_the_task_lines():
    term = Terminal()
    reporter = for_stream(term)
    assert isinstance(reporter, RichReporter)
    with reporting(reporter):
        reporter.task("started", Record("fit:[a]"), 0, 1)  # brackets are not Rich markup
        reporter.step("predict [a]", 1, 2, "origin 444")
        reporter.step("predict [a]", 2, 2, "origin 445")
        reporter.transfer("download ged.zip", 500, 1000)
        reporter.transfer("download ged.zip", 1000, 1000)
        reporter.note("a note")
    text = term.getvalue()
    assert "start  fit:[a]" in text
    assert "download ged.zip: 0.0 MB done" in text
    assert "a note" in text
