"""Folder names and sizes the target can't take, checked after our own folder mapping."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from checks.context import CheckContext
from checks.families.canary_target import canary_target
from checks.families.identity import identity, with_identity
from checks.model import Finding, Severity
from checks.registry import check
from checks.survey import survey
from runners.folders import plan_folders
from runners.model import TargetLayout

#: Exchange's limits (items per folder, subfolders per folder, depth); other targets get them as info.
EXCHANGE_LIMITS = (1_000_000, 10_000, 300)
#: Names Exchange keeps for itself at the top level ("NO Folder name is reserved").
RESERVED = {"files"}


def _target_layout(ctx: CheckContext) -> TargetLayout:
    """The target's separator, prefix and special folders, read from the canary; IMAP defaults otherwise."""
    return canary_target(ctx).layout or TargetLayout("/", "")


@check("FLD-NAME-009", "Folder names survive the mapping to the target", category="source")
def folder_names(ctx: CheckContext) -> Iterator[Finding]:
    layout = _target_layout(ctx)
    exchange = ctx.plan.target.type in ("ews", "graph")
    for box in survey(ctx).mailboxes:
        if box.error is not None:
            continue
        ident = identity(ctx, box.entry)
        mappings = plan_folders(
            [f.folder for f in box.folders],
            ctx.plan.folders,
            layout,
        )
        by_name: dict[str, list[str]] = defaultdict(list)
        problems = 0
        for mapping in mappings:
            if mapping.excluded:
                continue
            source = mapping.source.display
            # Exchange (and many IMAP servers) compare folder names case-insensitively.
            by_name["/".join(mapping.target_path).casefold()].append(source)
            for note in mapping.notes:
                problems += 1
                yield Finding(
                    "FLD-NAME-009",
                    Severity.WARNING,
                    "folder",
                    f"{ident.object_id}/{source}",
                    "Folder will be renamed",
                    observed=note,
                    evidence=with_identity(ident),
                    key=source,
                    remediation="Accept the rename or set one in [folders] rename.",
                )
            odd = [s for s in mapping.target_path if s != s.strip() or s.endswith(".")]
            if odd:
                problems += 1
                yield Finding(
                    "FLD-NAME-009",
                    Severity.WARNING,
                    "folder",
                    f"{ident.object_id}/{source}",
                    "Folder name with leading/trailing blanks or a trailing dot",
                    observed=repr(odd[0]),
                    evidence=with_identity(ident),
                    key=f"blank:{source}",
                    remediation="Rename it in [folders] rename; Exchange and Windows clients trim them.",
                )
            if exchange and len(mapping.target_path) == 1 and mapping.target_path[0].casefold() in RESERVED:
                problems += 1
                yield Finding(
                    "FLD-NAME-009",
                    Severity.BLOCKER,
                    "folder",
                    f"{ident.object_id}/{source}",
                    "Reserved folder name on the target",
                    observed=source,
                    evidence=with_identity(ident),
                    key=f"reserved:{source}",
                    remediation=f'Rename it: [folders] rename = {{ "{source}" = "{source}_old" }}.',
                )
        for name, sources in by_name.items():
            if len(sources) > 1:
                problems += 1
                yield Finding(
                    "FLD-NAME-009",
                    Severity.BLOCKER,
                    "folder",
                    f"{ident.object_id}/{name}",
                    "Folders collide on the target",
                    observed=", ".join(sorted(sources)),
                    evidence=with_identity(ident),
                    expected="one source folder per target folder",
                    key=f"collide:{name}",
                    remediation="Rename one of them in [folders] rename; otherwise their messages merge.",
                )
        if not problems:
            yield Finding(
                "FLD-NAME-009",
                Severity.PASS,
                "mailbox",
                ident.object_id,
                "Folder names map cleanly",
                observed=f"{len(mappings)} folders",
                evidence=with_identity(ident),
            )


@check("FLD-LIM-010", "Folders within the target's item, subfolder and depth limits", category="source")
def folder_limits(ctx: CheckContext) -> Iterator[Finding]:
    items, children, depth = EXCHANGE_LIMITS
    severity = Severity.BLOCKER if ctx.plan.target.type in ("ews", "graph") else Severity.INFO
    for box in survey(ctx).mailboxes:
        if box.error is not None:
            continue
        ident = identity(ctx, box.entry)
        counts: dict[tuple[str, ...], int] = defaultdict(int)
        found = 0
        for folder in box.folders:
            path = folder.folder.path
            counts[path[:-1]] += 1
            if folder.messages > items or len(path) > depth:
                found += 1
                yield Finding(
                    "FLD-LIM-010",
                    severity,
                    "folder",
                    f"{ident.object_id}/{folder.folder.display}",
                    "Folder over the target's limits",
                    observed=f"{folder.messages} messages, depth {len(path)}",
                    evidence=with_identity(ident),
                    expected=f"at most {items} items and depth {depth}",
                    key=folder.folder.raw_name,
                    remediation="Split the folder by year with [folders] rename before migrating.",
                )
        for parent, n in counts.items():
            if n > children:
                found += 1
                yield Finding(
                    "FLD-LIM-010",
                    severity,
                    "folder",
                    f"{ident.object_id}/{'/'.join(parent) or '(top)'}",
                    "Too many subfolders",
                    observed=f"{n} subfolders",
                    evidence=with_identity(ident),
                    expected=f"at most {children}",
                    key="children:" + "/".join(parent),
                    remediation="Regroup subfolders before migrating.",
                )
        if not found:
            yield Finding(
                "FLD-LIM-010",
                Severity.PASS,
                "mailbox",
                ident.object_id,
                "Folders within limits",
                observed=f"{len(box.folders)} folders, largest {max((f.messages for f in box.folders), default=0)} messages",
                evidence=with_identity(ident),
            )
