"""The read API (`ewspipe serve`): one month of pgm forecasts, and 200 concurrent requests.

Targets from the issue (2-core reference machine):

* latency: the p95 of sequential requests for one month of the published pgm forecast
  (13,110 cells, JSON) <= 200 ms, client-side wall time over loopback;
* concurrency: 200 concurrent requests over loopback, all answered without an error (each
  with a 60 s timeout, all of them within 180 s).

Each child writes a seeded synthetic pgm run of the shape of one real run (13,110 cells x 36
steps, point + 100 samples) into a fresh state directory's production PredictionStore,
points the published pgm/ged_sb pointer at it (PublishedPointers.move), starts
``ewspipe serve`` on 127.0.0.1 and a free port as a child process, and times the requests
itself (httpx); the server is stopped with Ctrl-C at the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, Benchmark, Case, Target, VerificationError, ewspipe_command

__all__ = ["BENCHMARKS"]

LAST_MONTH = 535
CELLS, STEPS, SAMPLES = 13_110, 36, 100
RUN = f"m{LAST_MONTH}-bench"
MODEL = "bench_chorus"
WARMUP, REQUESTS = 5, 60
P95_TARGET_S = 0.200
CONCURRENT, PAGE, FULL_EVERY = 200, 500, 4
REQUEST_TIMEOUT_S, ALL_TIMEOUT_S = 60.0, 180.0
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _workspace(root: Path) -> tuple[Path, Any]:
    """ewspipe.toml + a published synthetic pgm run; returns (config, written point array)."""
    import numpy as np
    import pandas as pd

    from ewspipe.models.forecast import Forecast
    from ewspipe.store.prediction_store import PredictionStore
    from ewspipe.store.published import PublishedPointers
    from ewspipe.store.statedb import open_state_db

    cfg = root / "ewspipe.toml"
    cfg.write_text('[workspace]\nstate_dir = "state"\n\n[tracking]\nenabled = false\n')
    rng = np.random.default_rng(20_260_535)
    cells = np.sort(rng.choice(259_200, size=CELLS, replace=False)) + 1
    frame = pd.DataFrame({
        "origin": np.full(CELLS * STEPS, LAST_MONTH),
        "step": np.repeat(np.arange(1, STEPS + 1), CELLS),
        "month_id": LAST_MONTH + np.repeat(np.arange(1, STEPS + 1), CELLS),
        "priogrid_gid": np.tile(cells, STEPS),
    })
    samples = rng.gamma(0.3, 4.0, size=(len(frame), SAMPLES))
    samples[rng.random(samples.shape) < 0.9] = 0.0
    point = samples.mean(axis=1)
    prod = root / "state" / "production"
    PredictionStore(prod / "predictions").write(
        Forecast(frame=frame, point=point, samples=samples, unit_column="priogrid_gid"),
        level="pgm", run=RUN, model=MODEL,
        metadata={"target": "ged_sb", "status": "deployed", "kind": "ensemble"})
    PublishedPointers(prod / "published", open_state_db("", prod),
                      environment="production").move({
        "publish_id": "bench", "level": "pgm", "target": "ged_sb", "run": RUN,
        "primary": MODEL, "models": [MODEL], "published_at": "2026-01-01T00:00:00Z"})
    first = frame["month_id"].to_numpy() == LAST_MONTH + 1
    return cfg, point[first].astype(np.float32)


class _Server:
    """`ewspipe serve` in a child process, on 127.0.0.1 and a free port."""

    def __init__(self, cfg: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items()
               if k not in ("EWSPIPE_CONFIG", "EWSPIPE_STATE_DIR", "EWSPIPE_API_TOKEN")}
        self.proc = subprocess.Popen(
            [*ewspipe_command(), "--config", str(cfg), "serve", "--port", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ewspipe serve exited {self.proc.returncode}: "
                                   f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"ewspipe serve did not answer within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _month_params() -> dict[str, Any]:
    return {"month_from": LAST_MONTH + 1, "month_to": LAST_MONTH + 1}


def _latency(server: _Server, want: Any) -> dict[str, Any]:
    import httpx
    import numpy as np

    times, equal = [], True
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as http:
        for i in range(WARMUP + REQUESTS):
            t0 = time.perf_counter()
            resp = http.get("/api/v1/forecasts/pgm/ged_sb", params=_month_params())
            body = resp.json()
            elapsed = time.perf_counter() - t0
            if i >= WARMUP:
                times.append(elapsed)
            if i == 0:
                got = np.array([r["point"] for r in body["rows"]], dtype=np.float32)
                equal = (resp.status_code == 200 and body["total"] == CELLS
                         and len(body["rows"]) == CELLS and body["published"]
                         and bool(np.allclose(got, want, atol=1e-5)))
            elif resp.status_code != 200 or len(body["rows"]) != CELLS:
                equal = False
        size = len(resp.content)
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)]
    return {"case": "latency", "requests": REQUESTS, "warmup": WARMUP, "rows": CELLS,
            "bytes": size, "equal": equal, "p50_s": statistics.median(times), "p95_s": p95,
            "max_s": max(times)}


async def _concurrent(server: _Server) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as http:
        async def one(i: int) -> None:
            full = i % FULL_EVERY == 0  # every FULL_EVERY-th request: the whole month
            params = {**_month_params()} if full else {
                **_month_params(), "limit": PAGE, "offset": (i * 61) % (CELLS - PAGE)}
            try:
                resp = await http.get("/api/v1/forecasts/pgm/ged_sb", params=params)
                body = resp.json()
                if resp.status_code != 200 or len(body["rows"]) != (CELLS if full else PAGE) \
                        or body["total"] != CELLS:
                    errors.append(f"request {i}: HTTP {resp.status_code}")
            except (httpx.HTTPError, ValueError) as exc:
                errors.append(f"request {i}: {type(exc).__name__}: {exc}")

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(CONCURRENT))),
                               timeout=ALL_TIMEOUT_S)
        wall = time.perf_counter() - t0
    return {"case": "concurrency", "requests": CONCURRENT, "rows_each": PAGE,
            "full_months": len(range(0, CONCURRENT, FULL_EVERY)),
            "errors": len(errors), "first_errors": errors[:5], "wall_s": wall}


def _child(argv: list[str]) -> int:
    cases: dict[str, Callable[[_Server, Any], dict[str, Any]]] = {
        "latency": _latency,
        "concurrency": lambda server, _: asyncio.run(_concurrent(server)),
    }
    if len(argv) != 1 or argv[0] not in cases:
        print(f"usage: python -m benchmarks.bench_api {'|'.join(cases)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="ewspipe-api-") as tmp:
        cfg, want = _workspace(Path(tmp))
        server = _Server(cfg)
        try:
            server.wait()
            doc = cases[argv[0]](server, want)
        finally:
            server.stop()
    print(json.dumps(doc))
    return 0


# --- cases ---------------------------------------------------------------------------------


def _load(stdout: str) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise VerificationError(f"no JSON result from the child: {stdout[-500:]!r}") from exc
    return doc


def _argv(case: str) -> Callable[[Path], list[str]]:
    return lambda _: ["env", f"PYTHONPATH={REPO}", sys.executable, "-m",
                      "benchmarks.bench_api", case]


def _verify_latency(stdout: str) -> str:
    doc = _load(stdout)
    if not doc["equal"]:
        raise VerificationError("the API's month of pgm forecasts differs from what was "
                                "written (rows, total or values)")
    verdict = "met" if doc["p95_s"] <= P95_TARGET_S else "MISSED"
    return (f"{doc['requests']} sequential GETs (after {doc['warmup']} warm-up) of one month "
            f"of the published pgm forecast: {doc['rows']:,} cells, {doc['bytes'] / 1024:,.0f}"
            f" KiB JSON each, equal to what was written; p50 {doc['p50_s'] * 1000:.0f} ms, "
            f"p95 {doc['p95_s'] * 1000:.0f} ms, max {doc['max_s'] * 1000:.0f} ms (target p95 "
            f"<= {P95_TARGET_S * 1000:.0f} ms: {verdict})")


def _verify_concurrency(stdout: str) -> str:
    doc = _load(stdout)
    verdict = "met" if doc["errors"] == 0 else "MISSED"
    return (f"{doc['requests']} concurrent GETs of one pgm month ({doc['full_months']} of "
            f"all {CELLS:,} cells, the others pages of {doc['rows_each']} rows) over loopback "
            f"in {doc['wall_s']:.1f} s: {doc['errors']} errors "
            f"{doc['first_errors'] or ''}(target: none: {verdict})")


CASE_NOTE = ("seeded synthetic pgm run (13,110 cells x 36 steps, point + 100 samples) in a "
             "fresh state directory's production store, published with "
             "PublishedPointers.move; `ewspipe serve` on 127.0.0.1 and a free port in a child "
             "process; the table's wall time is the whole child (writing the run, starting "
             "the server, the requests).")


def _cases() -> list[Case]:
    return [
        Case(label="one pgm month from the API: p95 latency", argv=_argv("latency"),
             verify=_verify_latency,
             met=lambda out: bool(_load(out)["p95_s"] <= P95_TARGET_S),
             display="PYTHONPATH=<repo> .venv/bin/python -m benchmarks.bench_api latency",
             target=Target(peak_rss_mib=4096.0),
             note=CASE_NOTE + f" GET /api/v1/forecasts/pgm/ged_sb?month_from={LAST_MONTH + 1}"
             f"&month_to={LAST_MONTH + 1} (JSON), {REQUESTS} timed sequential requests on one "
             f"keep-alive connection after {WARMUP} warm-up ones. Target: p95 <= "
             f"{P95_TARGET_S * 1000:.0f} ms, checked every run (below)."),
        Case(label="200 concurrent requests over loopback", argv=_argv("concurrency"),
             verify=_verify_concurrency, met=lambda out: _load(out)["errors"] == 0,
             display="PYTHONPATH=<repo> .venv/bin/python -m benchmarks.bench_api concurrency",
             target=Target(peak_rss_mib=4096.0),
             note=CASE_NOTE + f" {CONCURRENT} GETs of that month at once, every {FULL_EVERY}th "
             f"for all its cells, the others for {PAGE}-row pages "
             f"(httpx AsyncClient, {CONCURRENT} connections, {REQUEST_TIMEOUT_S:g} s timeout "
             f"each, {ALL_TIMEOUT_S:g} s for all). Target: no error, checked every run."),
    ]


BENCHMARKS = [
    Benchmark(
        name="api",
        title="the read API: one pgm month p95 latency, 200 concurrent requests",
        description=(
            "`ewspipe serve` over loopback on a published synthetic pgm run of the shape of a "
            "real one. Targets from the issue, 2-core reference machine: the p95 latency of "
            f"one month of pgm forecasts (13,110 cells) <= {P95_TARGET_S * 1000:.0f} ms; "
            f"{CONCURRENT} concurrent requests with no errors."
        ),
        cases=_cases,
    )
]


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
