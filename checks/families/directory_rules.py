"""Address format rules for the target directory, after Microsoft's IdFix error types.

Character, Format, TopLevelDomain, DomainPart, LocalPart, Length, Blank: each rule returns short
problem texts, empty when the value is fine. Pure functions: no LDAP here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from checks.families.directory_people import split_proxy
from checks.ldapdir import Entry

PROXY_MAX = 256
UPN_MAX = 113
UPN_LOCAL_MAX = 63  # "fewer than 64 before the @"
UPN_DOMAIN_MAX = 47  # "fewer than 48 after"
#: Domains that never route on the internet, so a cloud target refuses them.
NON_ROUTABLE_TLDS = frozenset({"local", "localdomain", "lan", "internal", "intranet", "localhost", "invalid"})
ADDRESS_BAD = frozenset('<>();,[]"\\')
UPN_BAD = frozenset("\\%&*+/=?{}|<>();:,[]\"'")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class Problem:
    attribute: str
    value: str
    problems: tuple[str, ...]


def address_problems(address: str) -> list[str]:
    if not address.strip():
        return ["blank"]
    out: list[str] = []
    if any(c.isspace() for c in address):
        out.append("contains whitespace")
    bad = sorted({c for c in address if c in ADDRESS_BAD})
    if bad:
        out.append("characters not allowed: " + " ".join(bad))
    if address.count("@") != 1:
        out.append("no @ and domain" if "@" not in address else "more than one @")
        return out
    local, _, domain = address.partition("@")
    if not local:
        out.append("empty local part")
    elif local.startswith(".") or local.endswith(".") or ".." in local:
        out.append("local part starts or ends with a dot, or has two in a row")
    out += domain_problems(domain)
    return out


def domain_problems(domain: str) -> list[str]:
    name = domain.lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return [f"domain {domain!r} is not a valid (international) domain name"]
    if "." not in name:
        return [f"domain {domain!r} has no dot: not a routable domain"]
    labels = name.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return [f"domain {domain!r} has an empty or invalid label"]
    if labels[-1] in NON_ROUTABLE_TLDS or labels[-1].isdigit():
        return [f"top-level domain .{labels[-1]} is not routable"]
    return []


def upn_problems(upn: str) -> list[str]:
    if not upn.strip():
        return ["blank"]
    out: list[str] = []
    if len(upn) > UPN_MAX:
        out.append(f"{len(upn)} characters, at most {UPN_MAX} allowed")
    if any(c.isspace() for c in upn):
        out.append("contains whitespace")
    bad = sorted({c for c in upn if c in UPN_BAD})
    if bad:
        out.append("characters not allowed: " + " ".join(bad))
    if not upn.isascii():
        out.append("non-ASCII characters")
    if upn.count("@") != 1:
        out.append("no @ and domain" if "@" not in upn else "more than one @")
        return out
    local, _, domain = upn.partition("@")
    if not local:
        out.append("empty part before the @")
    elif len(local) > UPN_LOCAL_MAX:
        out.append(f"{len(local)} characters before the @, fewer than {UPN_LOCAL_MAX + 1} allowed")
    if len(domain) > UPN_DOMAIN_MAX:
        out.append(f"{len(domain)} characters after the @, fewer than {UPN_DOMAIN_MAX + 1} allowed")
    out += domain_problems(domain)
    return out


def proxy_problems(value: str) -> list[str]:
    out: list[str] = []
    if len(value) > PROXY_MAX:
        out.append(f"{len(value)} characters, at most {PROXY_MAX} allowed")
    kind, address = split_proxy(value)
    if kind == "":
        out.append("no address type prefix (SMTP:, smtp:, X500:)")
    elif kind is not None:  # smtp: the address itself must be valid; other types are opaque
        out += address_problems(address)
    return out


def object_problems(
    entry: Entry, mail: tuple[str, ...], proxies: tuple[str, ...], upn: str
) -> Iterator[Problem]:
    """Every bad value of one target object, attribute by attribute."""
    for name in mail:
        for value in entry.values(name):
            found = address_problems(value)
            if found:
                yield Problem(name, value, tuple(found))
    for name in proxies:
        values = entry.values(name)
        for value in values:
            found = proxy_problems(value)
            if found:
                yield Problem(name, value, tuple(found))
        primaries = [v for v in values if v.startswith("SMTP:")]
        if len(primaries) > 1:
            yield Problem(name, ", ".join(primaries), ("more than one primary (SMTP:) address",))
    for value in entry.values(upn):
        found = upn_problems(value)
        if found:
            yield Problem(upn, value, tuple(found))
