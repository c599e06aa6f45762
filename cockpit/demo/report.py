"""What the demo shows: each seeded problem, what found it before any wave, and how the pilot and
its verification explain it; then the readiness, pilot and verify summaries. As text and as JSON
from the same data, like every other command."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from checks.model import Finding, Severity, State
from checks.render import run_data
from cockpit.demo.scenario import DemoResult
from lab import data
from lab.plan import PILOT
from runners.engine.summary import summary_data

SHOWN_FINDINGS = ("blocker", "warning")


def problem_findings(result: DemoResult, problem: data.Problem, checks: tuple[str, ...]) -> list[Finding]:
    services = result.lab.services
    objects = {(services[o].address if o in services else o).lower() for o in problem.objects}
    return [
        f
        for o in result.readiness.outcomes
        if o.check_id in checks
        for f in o.findings
        if f.object_id.lower() in objects
    ]


def pilot_explanation(result: DemoResult, problem: data.Problem) -> str | None:
    """How the pilot and its verification account for the problem, in their own words.

    None when they don't (a defect); a sentence saying so when the problem is not the pilot's.
    """
    entry = next((m for m in result.plan.mailboxes if m.source == problem.mailbox), None)
    if entry is None:
        return "not a mailbox: found by readiness before any wave"
    if entry.wave != PILOT:
        return f"in wave {entry.wave}, not the pilot: found by readiness before any wave"
    status = result.status
    verified = next(m for m in result.verify.mailboxes if m.source == problem.mailbox)
    if problem.key in ("corrupt-message", "oversized-message"):
        wanted = "failed" if problem.key == "corrupt-message" else "skipped"
        rows = [r for r in status["not_copied"] if r["mailbox"] == problem.mailbox and r["status"] == wanted]
        diffs = [d for d in verified.differences if d.bucket == wanted]
        if rows and diffs and all(d.reason for d in diffs):
            r = rows[0]
            return f"{r['folder']} UID {r['uid']} {wanted}: {r['reason']}"
        return None
    if problem.key == "unselectable-folder":
        errors = [f for f in status["folder_errors"] if f["source"] == problem.mailbox]
        checked = [f for f in verified.folders if f.error]
        if errors and checked:
            return f"folder {errors[0]['source_path']} not copied: {errors[0]['error']}"
        return None
    if problem.key == "login-fails":
        row = next(m for m in status["mailboxes"] if m["source"] == problem.mailbox)
        if row["state"] == "failed" and row["error_kind"] == "login" and verified.error:
            return f"mailbox failed ({row['error_kind']}): {row['error']}"
        return None
    # The catch-all copies like any mailbox: its problem is mail routing after the cutover.
    how = (
        "byte for byte"
        if result.verify.keeps_bytes
        else "by the fields the target keeps (it re-renders messages)"
    )
    return f"copied and verified {how}" if verified.ok else None


def problems_data(result: DemoResult) -> list[dict[str, Any]]:
    out = []
    for problem in result.lab.data.problems:
        found = [
            f for f in problem_findings(result, problem, problem.found_by) if f.severity != Severity.PASS
        ]
        missed = sorted(set(problem.found_by) - {f.check_id for f in found})
        shown = found + problem_findings(result, problem, problem.shown_by)
        explained = pilot_explanation(result, problem)
        out.append(
            {
                "key": problem.key,
                "subject": problem.mailbox,
                "what": problem.what,
                "found_by": list(problem.found_by),
                "not_found_by": missed,
                "findings": [_finding(f) for f in shown],
                "pilot": explained,
                "ok": not missed and explained is not None,
            }
        )
    return out


def _finding(f: Finding) -> dict[str, str]:
    return {
        "check_id": f.check_id,
        "severity": f.severity.value,
        "object_id": f.object_id,
        "title": f.title,
        "observed": f.observed,
        "evidence": f.evidence,
    }


def demo_data(result: DemoResult, *, kept: bool) -> dict[str, Any]:
    problems = problems_data(result)
    totals = result.verify.totals()
    return {
        "ok": all(p["ok"] for p in problems)
        and not result.lab.errors
        and not result.readiness.incomplete
        and not totals["lost"]
        and not totals["different"],
        "state_dir": str(result.plan.path.parent),
        "plan": str(result.plan.path),
        "kept": kept,
        "lab": {s.name: {"url": s.url, "note": s.note} for s in result.lab.services.values()},
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "problems": problems,
        "readiness": _without_passes(
            run_data(result.readiness, result.readiness_run_id, result.readiness_changes)
        ),
        "pilot": summary_data(result.pilot),
        "failures": {
            "not_copied": result.status["not_copied"],
            "folder_errors": result.status["folder_errors"],
            "mailboxes_failed": [m for m in result.status["mailboxes"] if m["state"] == "failed"],
        },
        "verify": result.verify.as_dict(),
        "server_errors": result.lab.errors,
    }


def _without_passes(run: dict[str, Any]) -> dict[str, Any]:
    """Passes stay counted in the summary; listed one by one they would be most of the output
    (the state store keeps every finding of the run, passes included)."""
    return run | {"findings": [f for f in run["findings"] if f["severity"] != "pass"]}


def demo_text(result: DemoResult, report: dict[str, Any]) -> str:
    return "\n".join(_text_lines(result, report))


def _text_lines(result: DemoResult, report: dict[str, Any]) -> Iterator[str]:
    yield f"cutover demo: an embedded lab on {result.lab.host}, every server in this process"
    for service in result.lab.services.values():
        yield f"  {service.name:<12} {service.url:<28} {service.note}"
    yield f"plan: {report['plan']}"
    yield ""
    yield from _readiness_lines(result, report["readiness"])
    yield ""
    yield from _pilot_lines(result)
    yield ""
    yield from _verify_lines(result)
    yield ""
    yield "Seeded problems:"
    for p in report["problems"]:
        mark = "ok  " if p["ok"] else "MISS"
        yield f"  [{mark}] {p['key']}: {p['subject']}: {p['what']}"
        for f in p["findings"]:
            yield f"         {f['severity'].upper():<8} {f['check_id']:<14} {f['title']}"
        if p["not_found_by"]:
            yield f"         not reported by {', '.join(p['not_found_by'])}"
        yield f"         pilot: {p['pilot'] or 'NOT EXPLAINED'}"
    for error in result.lab.errors:
        yield f"server error: {error.splitlines()[0]}"
    yield ""
    if report["ok"]:
        yield (
            "Outcome: every seeded problem was found by readiness before any wave, and the pilot and "
            "its verification explain every message they did not copy."
        )
    else:
        yield "Outcome: NOT AS EXPECTED (see MISS above)."
    where = report["state_dir"]
    yield (
        f"State kept in {where}: try `cutover status --plan {report['plan']} --failures`."
        if report["kept"]
        else "State removed (keep it with --keep)."
    )


def _readiness_lines(result: DemoResult, run: dict[str, Any]) -> Iterator[str]:
    s = run["summary"]
    yield (
        f"1. Readiness ({len(run['checks'])} checks, {run['seconds']:.1f} s): {s['blocker']} blocker(s), "
        f"{s['warning']} warning(s), {s['info']} info, {s['pass']} pass; {s['checks_skipped']} skipped, "
        f"{s['checks_error']} could not run"
    )
    for f in run["findings"]:
        if f["severity"] in SHOWN_FINDINGS:
            yield f"   {f['severity'].upper():<8} {f['check_id']:<14} {f['object_id']}: {f['title']}"
            yield f"            {f['observed']}"
    for outcome in result.readiness.outcomes:
        if outcome.state != State.OK:
            yield f"   {outcome.state.value:<8} {outcome.check_id:<14} {outcome.reason}"


def _pilot_lines(result: DemoResult) -> Iterator[str]:
    r = result.pilot
    t = r.stats.totals()
    states = Counter(m.state for m in r.stats.mailboxes.values())
    yield (
        f"2. Pilot wave ({t['mailboxes']} mailboxes, {r.seconds:.1f} s): {r.status}; "
        + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        + f"; {t['copied']} of {t['messages_total']} messages copied, {t['skipped']} skipped, {t['failed']} failed"
    )
    yield "   Drill-down (cutover status --wave pilot --failures):"
    for m in result.status["mailboxes"]:
        if m["state"] == "failed":
            yield f"   mailbox {m['source']} failed ({m['error_kind']}): {m['error']}"
    for f in result.status["folder_errors"]:
        yield f"   folder  {f['source']} {f['source_path']}: {f['error']}"
    for row in result.status["not_copied"]:
        yield (
            f"   message {row['mailbox']} {row['folder']} UID {row['uid']} ({row['size']} bytes) "
            f"{row['status']}: {row['reason']}"
        )


def _verify_lines(result: DemoResult) -> Iterator[str]:
    report = result.verify
    t = report.totals()
    verdict = "OK" if report.ok else ("INCOMPLETE" if report.incomplete else "DIFFERENCES")
    yield (
        f"3. Verify --deep ({result.seconds.get('verify', 0.0):.1f} s): {verdict}: {t['ok']} "
        + ("byte-identical, " if report.keeps_bytes else "proven by the fields the target keeps, ")
        + f"{t['skipped']} skipped, {t['failed']} failed, {t['lost']} lost, {t['different']} different"
    )
    for m in report.mailboxes:
        if m.error:
            yield f"   {m.source}: not verified: {m.error}"
        for folder in m.folders:
            if folder.error:
                yield f"   {m.source} {folder.source}: {folder.error}"
        for d in m.differences:
            yield f"   {m.source} {d.folder} UID {d.uid} {d.bucket}: {d.reason}"
