"""Folder mapping: source hierarchy → target wire names.

Order of rules: an explicit ``[folders] rename`` (longest source prefix wins) beats special-use
mapping, which beats keeping the name. Descendants follow their parent: if ``Sent`` becomes
``Sent Items``, ``Sent/2019`` becomes ``Sent Items/2019``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

from runners.model import FolderInfo, TargetLayout
from runners.plan.model import FolderRules
from runners.special_use import SPECIAL_KEYS, SPECIAL_USES

#: Top-level folder names that mean a special-use folder on servers without SPECIAL-USE.
#: Compared case-insensitively; covers the names Outlook, Thunderbird, Apple Mail and Roundcube
#: create in English, German, French, Spanish, Italian and Dutch.
SPECIAL_NAMES: dict[str, str] = {
    name.casefold(): use
    for use, names in {
        "\\Sent": (
            "Sent",
            "Sent Items",
            "Sent Messages",
            "Sent Mail",
            "Gesendet",
            "Gesendete Elemente",
            "Gesendete Objekte",
            "Éléments envoyés",
            "Envoyés",
            "Elementos enviados",
            "Enviados",
            "Posta inviata",
            "Inviati",
            "Verzonden items",
            "Verzonden",
        ),
        "\\Drafts": ("Drafts", "Draft", "Entwürfe", "Brouillons", "Borradores", "Bozze", "Concepten"),
        "\\Trash": (
            "Trash",
            "Deleted Items",
            "Deleted Messages",
            "Papierkorb",
            "Gelöschte Elemente",
            "Gelöschte Objekte",
            "Corbeille",
            "Éléments supprimés",
            "Papelera",
            "Elementos eliminados",
            "Cestino",
            "Posta eliminata",
            "Verwijderde items",
            "Bin",
        ),
        "\\Junk": (
            "Junk",
            "Spam",
            "Junk E-Mail",
            "Junk Email",
            "Junk Mail",
            "Bulk Mail",
            "Junk-E-Mail",
            "Courrier indésirable",
            "Correo no deseado",
            "Posta indesiderata",
            "Ongewenste e-mail",
        ),
        "\\Archive": ("Archive", "Archives", "Archiv", "Archivo", "Archivio", "Archief"),
    }.items()
    for name in names
}


@dataclass(frozen=True, slots=True)
class FolderMapping:
    source: FolderInfo
    target_path: tuple[str, ...]
    target_wire: str
    #: Why the folder is left out (plan exclude, not selectable), or None when it is copied.
    excluded: str | None = None
    #: What was changed to make the name legal on the target, for the run log.
    notes: tuple[str, ...] = ()


def decode_segment(raw: str) -> str:
    """Modified UTF-7 → Unicode; names that aren't valid mUTF-7 are kept as they are."""
    if "&" not in raw:
        return raw
    try:
        from imapclient import imap_utf7  # on first use: `python -X importtime` puts it at ~50 ms

        return str(imap_utf7.decode(raw.encode("ascii")))
    except (ValueError, UnicodeError):
        return raw


def encode_segment(name: str) -> str:
    if name.isascii() and "&" not in name:
        return name
    from imapclient import imap_utf7

    return bytes(imap_utf7.encode(name)).decode("ascii")


def source_path(raw_name: str, separator: str | None, prefix: str) -> tuple[str, ...]:
    """Wire name → Unicode hierarchy without the namespace prefix (``INBOX.a.b`` → ``(a, b)``)."""
    if raw_name.upper() == "INBOX":
        return ("INBOX",)
    name = raw_name
    if prefix and name.startswith(prefix) and len(name) > len(prefix):
        name = name[len(prefix) :]
    segments = name.split(separator) if separator else [name]
    return tuple(decode_segment(s) for s in segments if s != "")


def special_use_of(folder: FolderInfo) -> str | None:
    if folder.special_use in SPECIAL_USES:
        return folder.special_use
    if len(folder.path) == 1:
        return SPECIAL_NAMES.get(folder.path[0].casefold())
    return None


def plan_folders(
    folders: Sequence[FolderInfo],
    rules: FolderRules,
    target: TargetLayout,
) -> list[FolderMapping]:
    """Map every source folder to its target folder name (excluded ones are kept, with the reason).

    The one folder plan: the engine, ``cutover verify`` and the readiness checks all call this with
    the source's folders and the target's ``layout()``.
    """
    renames = sorted(
        ((tuple(k.split("/")), tuple(v.split("/"))) for k, v in rules.rename.items()),
        key=lambda kv: -len(kv[0]),
    )
    special_targets: dict[str, tuple[str, ...]] = {
        use: tuple(path.split("/")) for use, path in target.special.items()
    }
    for key, special_path in rules.special.items():
        use = SPECIAL_KEYS.get(key.lower())
        if use:
            special_targets[use] = tuple(special_path.split("/"))
    # Special-use roots on the source, so that their descendants follow them.
    special_roots: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for folder in folders:
        use = special_use_of(folder)
        if use and use in special_targets and folder.path != special_targets[use]:
            special_roots.append((folder.path, special_targets[use]))
    special_roots.sort(key=lambda kv: -len(kv[0]))
    excludes = [p.casefold() for p in rules.exclude]

    out: list[FolderMapping] = []
    seen: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}
    for folder in folders:
        display = folder.display
        if any(fnmatch.fnmatchcase(display.casefold(), pat) for pat in excludes):
            out.append(FolderMapping(folder, folder.path, "", excluded="excluded by the plan"))
            continue
        path = _rewrite(folder.path, renames) or _rewrite(folder.path, special_roots) or folder.path
        path, fitted = fit_target_names(path, target, seen)
        wire, notes = target_wire_name(path, target.separator, target.prefix)
        notes = fitted + notes
        excluded = None if folder.selectable else "not selectable on the source (\\Noselect)"
        out.append(FolderMapping(folder, path, wire, excluded=excluded, notes=notes))
    return out


def fit_target_names(
    path: tuple[str, ...], target: TargetLayout, seen: dict[tuple[str, ...], tuple[tuple[str, ...], str]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Rename what the target reserves, or would take for another folder (``TargetLayout.reserved``,
    ``case_insensitive``): ``seen`` maps each casefolded target path planned so far to the source
    path it came from and its spelling. Returns the path and a note per rename; descendants follow
    a renamed parent, and a folder planned twice (special-use merges) stays one."""
    if not (target.reserved or target.case_insensitive) or path[0].upper() == "INBOX":
        return path, ()
    notes: list[str] = []
    fitted: list[str] = []
    for depth, segment in enumerate(path):
        origin = path[: depth + 1]
        parent = tuple(s.casefold() for s in fitted)
        why = target.reserved.get(segment.casefold()) if depth == 0 else None
        name = f"{segment} (migrated)" if why is not None else segment
        taken = seen.get((*parent, name.casefold())) if target.case_insensitive else None
        number = 2
        while taken is not None and taken[0] != origin:
            name = f"{segment} ({number})"
            number += 1
            taken = seen.get((*parent, name.casefold()))
        if taken is not None:
            name = taken[1]
        elif why is not None:
            notes.append(f"{segment!r} is a folder the target keeps for itself ({why}): renamed {name!r}")
        elif name != segment:
            notes.append(
                f"{'/'.join(origin)!r} would be the same folder as another one: the target compares folder "
                f"names case-insensitively; renamed {name!r}"
            )
        seen.setdefault((*parent, name.casefold()), (origin, name))
        fitted.append(name)
    return tuple(fitted), tuple(notes)


def _rewrite(
    path: tuple[str, ...], rules: Sequence[tuple[tuple[str, ...], tuple[str, ...]]]
) -> tuple[str, ...] | None:
    for old, new in rules:
        if path[: len(old)] == old:
            return new + path[len(old) :]
    return None


def target_wire_name(path: tuple[str, ...], separator: str, prefix: str) -> tuple[str, tuple[str, ...]]:
    """Unicode hierarchy → target wire name, replacing separator characters inside segments."""
    notes: list[str] = []
    clean: list[str] = []
    for segment in path:
        if separator and separator in segment:
            fixed = segment.replace(separator, "_")
            notes.append(f"{segment!r} contains the target separator {separator!r}: renamed {fixed!r}")
            segment = fixed
        clean.append(segment)
    if clean[0].upper() == "INBOX":
        if len(clean) == 1:
            return "INBOX", tuple(notes)
        return "INBOX" + separator + separator.join(encode_segment(s) for s in clean[1:]), tuple(notes)
    return prefix + separator.join(encode_segment(s) for s in clean), tuple(notes)


def parents_of(wire_name: str, separator: str, prefix: str) -> list[str]:
    """Every ancestor wire name below the namespace prefix, outermost first."""
    body = wire_name[len(prefix) :] if prefix and wire_name.startswith(prefix) else wire_name
    parts = body.split(separator) if separator else [body]
    head = prefix if prefix and wire_name.startswith(prefix) else ""
    return [head + separator.join(parts[:i]) for i in range(1, len(parts))]
