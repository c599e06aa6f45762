"""A check run as a table (for people), JSON (for scripts), JUnit XML (for CI) or Markdown (for tickets).

Every format is rendered from the same data (``run_data``), so they never disagree. That data is
made safe once (``runners.safe_text``: known secrets scrubbed, controls shown, one line per field but
the evidence); Markdown also escapes HTML and its own metacharacters, since directory data ends up in
table cells (``<img src=x onerror=...>@example.test``).
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from checks.history import Changes
from checks.model import Severity, State
from checks.runner import CheckRun
from runners.safe_text import safe_data, safe_lines

SEVERITY_ORDER = ("blocker", "warning", "info", "pass")


def run_data(run: CheckRun, run_id: int | None, changes: Changes | None) -> dict[str, Any]:
    changes = changes or Changes()
    findings = []
    for outcome in run.outcomes:
        for f in outcome.findings:
            change = (
                "new"
                if f.fingerprint in changes.new
                else "regressed"
                if f.fingerprint in changes.regressed
                else "persisting"
                if f.fingerprint in changes.persisting
                else ""
            )
            findings.append(
                {
                    "check_id": f.check_id,
                    "category": outcome.category,
                    "severity": f.severity.value,
                    "object_type": f.object_type,
                    "object_id": f.object_id,
                    "title": f.title,
                    "observed": f.observed,
                    "expected": f.expected,
                    "evidence": f.evidence,
                    "remediation": f.remediation,
                    "key": f.key,
                    "fingerprint": f.fingerprint,
                    "waiver": f.waiver,
                    "change": change,
                }
            )
    findings.sort(key=lambda f: (SEVERITY_ORDER.index(f["severity"]), f["check_id"], f["object_id"]))
    counted = Counter(f["severity"] for f in findings if not f["waiver"])
    data = {
        "run_id": run_id,
        "phase": run.phase,
        "seconds": round(run.seconds, 3),
        "complete": not run.incomplete,
        "summary": {s: counted.get(s, 0) for s in SEVERITY_ORDER}
        | {
            "waived": sum(1 for f in findings if f["waiver"]),
            "checks_error": sum(o.state == State.ERROR for o in run.outcomes),
            "checks_skipped": sum(o.state == State.SKIPPED for o in run.outcomes),
        },
        "checks": [
            {
                "check_id": o.check_id,
                "title": o.title,
                "category": o.category,
                "state": o.state.value,
                "reason": o.reason,
                "seconds": round(o.seconds, 3),
                "worst": o.worst.value if o.worst else None,
            }
            for o in run.outcomes
        ],
        "findings": findings,
        "resolved_since_last_run": changes.resolved,
    }
    evidence = [f["evidence"] for f in findings]  # several lines (a DNS answer): its newlines stay
    safe = safe_data(data)
    for finding, lines in zip(safe["findings"], evidence, strict=True):
        finding["evidence"] = safe_lines(lines)
    return dict(safe)


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True)


def render_table(data: dict[str, Any]) -> str:
    s = data["summary"]
    lines = [
        f"Readiness ({data['phase']}-cutover): {s['blocker']} blocker(s), {s['warning']} warning(s), "
        f"{s['info']} info, {s['pass']} pass; {s['waived']} waived; {s['checks_error']} check(s) could not run, "
        f"{s['checks_skipped']} skipped ({data['seconds']:.1f} s)",
        "",
        f"{'check':<18} {'category':<10} {'state':<8} {'worst':<8} title",
    ]
    for c in data["checks"]:
        worst = c["worst"] or ("-" if c["state"] != "ok" else "pass")
        lines.append(f"{c['check_id']:<18} {c['category']:<10} {c['state']:<8} {worst:<8} {c['title']}")
        if c["state"] != "ok":
            lines.append(f"{'':<18} {c['reason']}")
    problems = [f for f in data["findings"] if f["severity"] != "pass"]
    if problems:
        lines += ["", "Findings:"]
    for f in problems:
        waived = " (waived)" if f["waiver"] else ""
        change = f" [{f['change']}]" if f["change"] else ""
        lines.append(
            f"- {f['severity'].upper()}{waived} {f['check_id']} {f['object_type']} {f['object_id']}: {f['title']}{change}"
        )
        for label in ("observed", "expected", "evidence", "remediation", "waiver"):
            if f[label]:
                text = str(f[label]).replace("\n", "\n    ")
                lines.append(f"    {label}: {text}")
    if data["resolved_since_last_run"]:
        lines += ["", "Resolved since the last run:"]
        lines += [
            f"- {r['check_id']} {r['object_id']}: {r['title']}" for r in data["resolved_since_last_run"]
        ]
    return "\n".join(lines)


def render_markdown(data: dict[str, Any]) -> str:
    s = data["summary"]
    out = [
        f"# Readiness report ({data['phase']}-cutover)",
        "",
        f"**{s['blocker']} blockers**, {s['warning']} warnings, {s['info']} info, {s['pass']} passed, "
        f"{s['waived']} waived; {s['checks_error']} checks could not run.",
        "",
        "| severity | check | object | finding | remediation |",
        "|---|---|---|---|---|",
    ]
    for f in data["findings"]:
        if f["severity"] == "pass":
            continue
        sev = f["severity"] + (" (waived)" if f["waiver"] else "")
        out.append(
            f"| {sev} | {_md(f['check_id'])} | {_md(f['object_id'])} | {_md(f['title'])}: {_md(f['observed'])} | "
            f"{_md(f['remediation'])} |"
        )
    errors = [c for c in data["checks"] if c["state"] == "error"]
    if errors:
        out += ["", "## Checks that could not run", ""]
        out += [f"- **{_md(c['check_id'])}** {_md(c['title'])}: {_md(c['reason'])}" for c in errors]
    return "\n".join(out)


#: Characters Markdown (and GitHub's tables) give a meaning to: backslash-escaped in a cell.
_MD_META = re.compile(r"([\\`*_\[\]|~])")


def _md(text: object) -> str:
    """Directory or server text as literal Markdown: no raw HTML (``<`` ``>`` ``&`` as entities), no
    emphasis, link or cell break (metacharacters escaped), one line."""
    escaped = html.escape(str(text).replace("\n", " "), quote=False)
    return _MD_META.sub(r"\\\1", escaped)


def render_junit(data: dict[str, Any]) -> str:
    """One testsuite per category, one testcase per (check, object): blocker = failure, error = error."""
    root = ET.Element("testsuites", name="readiness")
    by_check = {c["check_id"]: c for c in data["checks"]}
    suites: dict[str, ET.Element] = {}
    counts: Counter[tuple[str, str]] = Counter()

    def suite(category: str) -> ET.Element:
        if category not in suites:
            suites[category] = ET.SubElement(root, "testsuite", name=f"readiness.{category}")
        return suites[category]

    for c in data["checks"]:
        if c["state"] == "ok":
            continue
        case = ET.SubElement(
            suite(c["category"]),
            "testcase",
            classname=f"readiness.{c['category']}",
            name=c["check_id"],
            time=str(c["seconds"]),
        )
        ET.SubElement(case, "error" if c["state"] == "error" else "skipped", message=c["reason"])
        counts[(c["category"], c["state"])] += 1
    for f in data["findings"]:
        category = by_check[f["check_id"]]["category"]
        case = ET.SubElement(
            suite(category),
            "testcase",
            classname=f"readiness.{category}",
            name=f"{f['check_id']} {f['object_id']}" + (f" [{f['key']}]" if f["key"] else ""),
        )
        counts[(category, "tests")] += 0
        if f["severity"] == Severity.BLOCKER and not f["waiver"]:
            failure = ET.SubElement(case, "failure", type="blocker", message=f["title"])
            failure.text = "\n".join(
                str(f[k]) for k in ("observed", "expected", "evidence", "remediation") if f[k]
            )
            counts[(category, "failure")] += 1
        elif f["severity"] != Severity.PASS:
            out = ET.SubElement(case, "system-out")
            out.text = f"{f['severity']}: {f['title']}: {f['observed']}" + (
                f" ({f['waiver']})" if f["waiver"] else ""
            )
    for category, element in suites.items():
        element.set("tests", str(len(element)))
        element.set("failures", str(counts[(category, "failure")]))
        element.set("errors", str(counts[(category, "error")]))
        element.set("skipped", str(counts[(category, "skipped")]))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
