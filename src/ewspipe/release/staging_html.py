"""The staging report as one self-contained HTML page (inline CSS, no external resource)."""

from __future__ import annotations

import html
import json
from typing import Any

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top}th{background:#f3f3f3}td.n{text-align:right}
.PASS{background:#d8f0d8}.WARN{background:#fbefc5}.FAIL{background:#f6c9c9}.SKIP{background:#e6e6e6}
.verdict{font-size:1.2em;padding:.4em .8em;display:inline-block}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em;max-height:40em}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def _pct(value: Any) -> str:
    return f"{value:+.2%}" if isinstance(value, (int, float)) else "n/a"


def _performance(evidence: dict[str, Any]) -> str:
    parts = []
    for run_type, ev in (evidence.get("run_types") or {}).items():
        rows = "".join(
            f"<tr><td>{_e(name)}</td><td>{_e(m.get('kind'))}</td><td>{_e(m.get('status'))}</td>"
            f"<td class=n>{_num(m.get('production'))}</td><td class=n>{_num(m.get('candidate'))}"
            f"</td><td class=n>{_pct(m.get('relative'))}</td></tr>"
            for name, m in (ev.get("models") or {}).items())
        parts.append(f"<h3>{_e(run_type)} ({_e(evidence.get('metric'))}, production -> "
                     f"candidate)</h3><table><tr><th>model</th><th>kind</th><th>status</th>"
                     f"<th>production</th><th>candidate</th><th>change</th></tr>{rows}</table>")
    return "".join(parts)


def _diff(evidence: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(d.get('status'))}</td>"
        f"<td class=n>{_num(d.get('total_production'))}</td>"
        f"<td class=n>{_num(d.get('total_candidate'))}</td><td class=n>"
        f"{_pct(d.get('total_change'))}</td><td class=n>{_num(d.get('max_unit_log_change'))}"
        f"</td><td>{', '.join(str(u['unit']) for u in d.get('top_units', [])[:5])}</td></tr>"
        for name, d in (evidence.get("models") or {}).items())
    return ("<table><tr><th>model</th><th>status</th><th>production total</th><th>candidate "
            "total</th><th>change</th><th>max unit |log1p change|</th><th>units moving most"
            f"</th></tr>{rows}</table>")


def _inference(evidence: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr class={'FAIL' if i.get('problems') else 'PASS'}><td>{_e(name)}</td>"
        f"<td>{_e(i.get('kind'))}</td><td>{_e(i.get('status'))}</td><td class=n>"
        f"{_e(i.get('rows'))}</td><td>{_e('; '.join(i.get('problems') or []) or 'ok')}</td></tr>"
        for name, i in (evidence.get("items") or {}).items())
    return ("<table><tr><th>forecast</th><th>kind</th><th>status</th><th>rows</th>"
            f"<th>problems</th></tr>{rows}</table>")


_TABLES = {"performance": _performance, "forecast_diff": _diff, "inference": _inference}


def render_html(report: dict[str, Any]) -> str:
    """The page for a ``StagingReport.to_dict()``."""
    verdict = "PASS" if report["passed"] else "FAIL"
    snaps = ", ".join(f"{k}: {v}" for k, v in sorted(report["snapshots"].items()))
    rows = "".join(
        f"<tr><td><a href='#{_e(g['gate'])}'>{_e(g['gate'])}</a></td>"
        f"<td class={_e(g['status'])}>{_e(g['status'])}</td><td>{_e(g['summary'])}</td></tr>"
        for g in report["gates"])
    sections = []
    for g in report["gates"]:
        table = _TABLES.get(g["gate"])
        body = table(g["evidence"]) if table else ""
        sections.append(
            f"<h2 id='{_e(g['gate'])}'>{_e(g['gate'])}: <span class={_e(g['status'])}>"
            f"{_e(g['status'])}</span></h2><p>{_e(g['summary'])}</p>{body}"
            f"<details><summary>evidence</summary><pre>"
            f"{_e(json.dumps(g['evidence'], indent=2, default=str))}</pre></details>")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>Staging {_e(report['candidate_commit'][:12])}</title><style>{_CSS}</style>"
        f"</head><body><h1>Staging report: {_e(report['candidate_ref'])} "
        f"({_e(report['candidate_commit'][:12])})</h1>"
        f"<p class='verdict {verdict}'>{verdict}"
        + (f": failed {', '.join(report['failed_gates'])}" if report["failed_gates"] else "")
        + f"</p><p>compared with production {_e((report['production_commit'] or 'none')[:12])}"
        f" on snapshots {_e(snaps)}; {_e(report['started_at'])} .. {_e(report['finished_at'])}"
        f"</p><table><tr><th>gate</th><th>status</th><th>summary</th></tr>{rows}</table>"
        + "".join(sections) + "</body></html>\n")
