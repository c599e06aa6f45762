"""The switch of one wave: its users' routing attribute in the directory and, for a domain whose last
wave this is, its DNS records, each confirmed; resumable after ``kill -9`` or an SSH drop.

Each sub-step is recorded when it completes (``switch:marks``, the target's UIDNEXT per folder
that a rollback copies back from, read before anything is routed; ``switch:directory``, ``switch:dns-update``,
``switch:dns-confirmed``); a rerun skips those done since the wave's final pass. The DNS update is
never repeated blindly: ``apply_records`` reads the primary first and sends only what differs, and
what it served before is recorded before anything is sent (the record a DNS rollback needs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from runners.engine import faults
from runners.plan.model import MailboxEntry, Plan
from runners.plan.switch_model import DomainRecords, SwitchDns
from runners.settle.rollback import rollback_readiness
from runners.settle.switch_marks import marks_path, record_switch_marks
from runners.state.statuses import StepStatus
from runners.state.store import StateStore
from runners.state.wave_step_rows import Actor
from runners.switch.directory import route_users
from runners.switch.dns_confirm import confirm, servers_by_zone
from runners.switch.dns_manual import instructions, manual_changes
from runners.switch.dns_update import Primary, apply_records, pending_changes
from runners.switch.records import DesiredRRset, rdata_texts, records_for
from runners.window.stages import (
    ON_TARGET,
    SWITCH_DIRECTORY,
    SWITCH_DNS_CONFIRMED,
    SWITCH_DNS_UPDATE,
    SWITCH_MARKS,
    wave_stage,
)

#: The routing proxy's table is not built yet: every switch's record says so.
PROXY_NOTE = "routing proxy table: not yet (issue #14)"


@dataclass(slots=True)
class SwitchOutcome:
    done: bool
    #: Why not done (each line one thing that didn't hold); empty when done.
    problems: list[str] = field(default_factory=list)
    did: dict[str, Any] = field(default_factory=dict)


class SubSteps:
    """A step made of sub-steps (the switch, the rollback), each recorded as it completes, so that
    a resumed step skips those in ``done_before``."""

    def __init__(
        self,
        plan: Plan,
        store: StateStore,
        wave: str,
        actor: Actor,
        say: Callable[[str], None],
        heartbeat: Callable[[], None],
        done_before: set[str],
    ) -> None:
        self.plan, self.store, self.wave, self.actor = plan, store, wave, actor
        self.say, self.heartbeat, self.done_before = say, heartbeat, done_before

    def run(self) -> SwitchOutcome:
        raise NotImplementedError  # each step runs its own sub-steps


class SwitchStep(SubSteps):
    """The switch's sub-steps for one wave, each recorded in the store as it completes."""

    def run(self) -> SwitchOutcome:
        outcome = SwitchOutcome(True, did={"proxy": PROXY_NOTE})
        self.say(PROXY_NOTE)
        self._marks(outcome)
        self._directory(outcome)
        if outcome.done:
            self._dns(outcome)
        return outcome

    # -- the rollback's marks ------------------------------------------------------------------------

    def _marks(self, outcome: SwitchOutcome) -> None:
        """Each target folder's UIDVALIDITY and UIDNEXT before mail is routed there: a rollback copies
        back exactly what arrived after them. Recorded once; a resumed switch reuses them."""
        reason = rollback_readiness(self.plan)
        if reason is not None:
            outcome.did["marks"] = f"not recorded: {reason}"
            return
        if SWITCH_MARKS in self.done_before:
            outcome.did["marks"] = "done before this run (resumed)"
            return
        step = self.store.begin_step(self.wave, SWITCH_MARKS, self.actor, {})
        try:
            marks = record_switch_marks(self.plan, self.wave)
        except Exception as exc:
            self.store.end_step(step, StepStatus.FAILED, did={"error": str(exc)})
            raise
        folders = sum(len(m) for m in marks.mailboxes.values())
        did = {
            "file": str(marks_path(self.plan, self.wave)),
            "mailboxes": len(marks.mailboxes),
            "folders": folders,
        }
        self.store.end_step(step, StepStatus.DONE, did=did)
        outcome.did["marks"] = did
        self.say(f"marks: UIDNEXT of {folders} target folder(s) recorded for a rollback")

    # -- the directory ---------------------------------------------------------------------------

    def _directory(self, outcome: SwitchOutcome) -> None:
        settings = self.plan.switch.directory if self.plan.switch else None
        if settings is None:
            outcome.did["directory"] = "no [switch.directory] in the plan: nothing routed there"
            return
        if SWITCH_DIRECTORY in self.done_before:
            self.say("directory: already done (resumed)")
            outcome.did["directory"] = "done before this run (resumed)"
            return
        addresses = [user_address(e) for e in self.plan.wave(self.wave)]
        step = self.store.begin_step(self.wave, SWITCH_DIRECTORY, self.actor,
                                     {"attribute": settings.attribute, "value": settings.target_value,
                                      "users": addresses})  # fmt: skip
        result = route_users(settings, addresses, "target")
        did = result.as_did()
        outcome.did["directory"] = did
        if not result.confirmed:
            self.store.end_step(step, StepStatus.FAILED, did=did)
            outcome.done = False
            outcome.problems += result.problems()
            return
        self.store.end_step(step, StepStatus.DONE, did=did)
        changed = sum(1 for u in result.users if u.outcome == "changed")
        self.say(
            f"directory: {result.attribute}={result.value} for {len(result.users)} user(s) ({changed} changed), read back"
        )

    # -- DNS -------------------------------------------------------------------------------------

    def _dns(self, outcome: SwitchOutcome) -> None:
        settings = self.plan.switch.dns if self.plan.switch else None
        if settings is None:
            outcome.did["dns"] = "no [switch.dns] in the plan: DNS untouched"
            return
        domains = last_wave_domains(self.plan, self.store, self.wave, settings.domains)
        if not domains:
            outcome.did["dns"] = "no domain whose last wave this is: DNS untouched"
            self.say("dns: no domain whose last wave this is")
            return
        desired = records_for(domains, settings.ttl)
        outcome.did["dns"] = {"domains": [d.domain for d in domains]}
        if SWITCH_DNS_UPDATE in self.done_before:
            self.say("dns: update already sent (resumed): confirming")
        else:
            outcome.did["dns"]["update"] = self._update(settings, desired)
        if SWITCH_DNS_CONFIRMED in self.done_before:
            return
        confirmed = self._confirm(settings, desired)
        outcome.did["dns"]["confirmation"] = confirmed
        if not confirmed["confirmed"]:
            outcome.done = False
            outcome.problems += [f"dns: not confirmed after {confirmed['elapsed']:.0f} s"] + confirmed[
                "lagging"
            ]

    def _update(self, settings: SwitchDns, desired: Sequence[DesiredRRset]) -> dict[str, Any]:
        primary = Primary.from_plan(settings)
        if primary is None:
            return self._manual(settings, desired)
        before = [{"label": c.desired.label, "before": list(c.previous), "after": list(rdata_texts(c.desired.rdataset()))}
                  for c in pending_changes(primary.server, desired, settings.timeout)]  # fmt: skip
        # What the primary served is kept before anything is sent: the record a rollback needs.
        step = self.store.begin_step(self.wave, SWITCH_DNS_UPDATE, self.actor,
                                     {"primary": str(primary.server), "changes": before})  # fmt: skip
        try:
            result = apply_records(primary, desired)
        except Exception as exc:
            self.store.end_step(step, StepStatus.FAILED, did={"error": str(exc)})
            raise
        faults.reached("switch-dns-sent")
        did = {"primary": result.primary, "sent": result.sent, "changes": [
            {"label": c.desired.label, "before": list(c.previous), "after": list(rdata_texts(c.desired.rdataset()))}
            for c in result.changes]}  # fmt: skip
        self.store.end_step(step, StepStatus.DONE, did=did)
        if result.sent:
            self.say(
                f"dns: update sent to {result.primary}: " + ", ".join(c.desired.label for c in result.changes)
            )
        else:
            self.say(f"dns: {result.primary} already serves the new records: nothing sent")
        return did

    def _manual(self, settings: SwitchDns, desired: Sequence[DesiredRRset]) -> dict[str, Any]:
        servers = servers_by_zone(desired, settings.nameservers)
        first = next(iter(servers.values()))[0]
        changes = manual_changes(first, desired, settings.timeout)
        text = instructions(changes)
        self.say(
            "dns: no primary and key in the plan: make these changes, the switch waits for them\n" + text
        )
        step = self.store.begin_step(self.wave, SWITCH_DNS_UPDATE, self.actor, {"manual": True})
        did = {"manual": True, "instructions": text}
        self.store.end_step(step, StepStatus.DONE, did=did)
        return did

    def _confirm(self, settings: SwitchDns, desired: Sequence[DesiredRRset]) -> dict[str, Any]:
        assert self.plan.switch is not None
        servers = servers_by_zone(desired, settings.nameservers)
        step = self.store.begin_step(self.wave, SWITCH_DNS_CONFIRMED, self.actor,
                                     {"servers": [str(s) for zone in servers.values() for s in zone],
                                      "timeout": self.plan.switch.confirm_timeout})  # fmt: skip

        def progress(state: Any) -> None:
            self.heartbeat()
            self.say("dns: " + state.summary())

        result = confirm(desired, servers, timeout=self.plan.switch.confirm_timeout,
                         interval=self.plan.switch.confirm_interval, progress=progress)  # fmt: skip
        did = {"confirmed": result.confirmed, "elapsed": round(result.elapsed, 3),
               "servers": [s.describe() for s in result.servers], "lagging": [s.describe() for s in result.lagging]}  # fmt: skip
        self.store.end_step(step, StepStatus.DONE if result.confirmed else StepStatus.FAILED, did=did)
        self.say("dns: " + result.summary())
        return did


def user_address(entry: MailboxEntry) -> str:
    """The address the directory knows a user by: the mailbox's address, else its target."""
    return entry.address or entry.target


def last_wave_domains(
    plan: Plan, store: StateStore, wave: str, domains: Sequence[DomainRecords]
) -> list[DomainRecords]:
    """The plan's DNS domains that have mailboxes in ``wave`` and whose every other mailbox is in a
    wave already served by the target (switched, settled or closed)."""
    stages: dict[str, bool] = {}

    def on_target(other: str) -> bool:
        if other not in stages:
            stages[other] = wave_stage(store, other) in ON_TARGET
        return stages[other]

    out = []
    for domain in domains:
        members = [e for e in plan.mailboxes if _domain(user_address(e)) == domain.domain]
        if any(e.wave == wave for e in members) and all(e.wave == wave or on_target(e.wave) for e in members):
            out.append(domain)
    return out


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")
