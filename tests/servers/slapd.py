"""A private OpenLDAP ``slapd`` per test module, started in the foreground (``slapd -d stats``).

Everything lives under one short temp dir (``/tmp/slXXXXXXXX``)::

    slapd.conf          generated config (``-f``; no cn=config tree to build)
    cutover-test.schema stand-ins for iPlanet, qmail-ldap and AD attributes (private OIDs)
    legacy/ target/     the two ``mdb`` databases, filled offline with ``slapadd`` before start
    legacy.ldif target.ldif  what was loaded   tls/   throwaway CA + server cert
    slapd.log           slapd's stderr: every connection and operation (``-d stats``)

Two suffixes: ``dc=legacy,dc=test`` plays the legacy mail directory, ``dc=target,dc=test`` an
Active Directory. ``sizelimit 500`` (slapd's default, written out) is in force for everyone; only
``READER_DN`` may page past it (``limits ... size.prtotal=unlimited``, the way an administrator
opens a directory to an export account), while ``LIMITED_DN`` is held to 500 in total even
when paging, so a check that gets a truncated answer can be seen to fail.

slapd runs as whoever runs the tests (root in CI: no ``-u``/``-g``, nothing to chown).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path

from servers.process import HOST, ServerProcess, free_ports
from servers.tlsca import Leaf, ThrowawayCA

LEGACY_SUFFIX = "dc=legacy,dc=test"
TARGET_SUFFIX = "dc=target,dc=test"
READER_DN = f"cn=reader,{LEGACY_SUFFIX}"
READER_PASSWORD = "reader-secret"
LIMITED_DN = f"cn=limited,{LEGACY_SUFFIX}"
LIMITED_PASSWORD = "limited-secret"
SIZE_LIMIT = 500

_MODULE_DIRS = ("/usr/lib/ldap", "/usr/lib/x86_64-linux-gnu/ldap", "/usr/local/libexec/openldap")
_SCHEMA_DIRS = ("/etc/ldap/schema", "/etc/openldap/schema", "/usr/local/etc/openldap/schema")

# Private OIDs under 1.3.6.1.4.1.99999 (not assigned to anyone): just enough schema to load
# the lab's iPlanet, qmail-ldap and AD-style entries. Not the vendors' definitions.
TEST_SCHEMA = """\
objectidentifier cutoverTest 1.3.6.1.4.1.99999.7
objectidentifier cutoverAt cutoverTest:1
objectidentifier cutoverOc cutoverTest:2

attributetype ( cutoverAt:1 NAME 'mailAlternateAddress'
  EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( cutoverAt:2 NAME 'mailEquivalentAddress'
  EQUALITY caseIgnoreIA5Match SUBSTR caseIgnoreIA5SubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( cutoverAt:3 NAME 'mailForwardingAddress'
  EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )
attributetype ( cutoverAt:4 NAME 'mailDeliveryOption'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( cutoverAt:5 NAME 'inetUserStatus'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( cutoverAt:6 NAME 'mailUserStatus'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( cutoverAt:7 NAME 'accountStatus'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( cutoverAt:8 NAME 'deliveryMode'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( cutoverAt:9 NAME 'proxyAddresses'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( cutoverAt:10 NAME 'userPrincipalName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( cutoverAt:11 NAME 'sAMAccountName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( cutoverAt:12 NAME 'userAccountControl'
  EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( cutoverAt:13 NAME 'msExchMailboxGuid'
  EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE )
attributetype ( cutoverAt:14 NAME 'homeMDB'
  EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 SINGLE-VALUE )

objectclass ( cutoverOc:1 NAME 'inetMailUser' AUXILIARY
  MAY ( mailAlternateAddress $ mailEquivalentAddress $ mailForwardingAddress $
        mailDeliveryOption $ mailUserStatus ) )
objectclass ( cutoverOc:2 NAME 'inetUser' AUXILIARY MAY ( inetUserStatus ) )
objectclass ( cutoverOc:3 NAME 'qmailUser' AUXILIARY
  MAY ( mailAlternateAddress $ mailForwardingAddress $ accountStatus $ deliveryMode ) )
objectclass ( cutoverOc:4 NAME 'user' SUP inetOrgPerson STRUCTURAL
  MAY ( proxyAddresses $ userPrincipalName $ sAMAccountName $ userAccountControl $
        msExchMailboxGuid $ homeMDB ) )
objectclass ( cutoverOc:5 NAME 'group' SUP top STRUCTURAL
  MUST cn MAY ( mail $ proxyAddresses $ member $ sAMAccountName $ description ) )
"""


class SlapdError(RuntimeError):
    """slapd could not be set up or started (the message carries its output)."""


# --- LDIF ------------------------------------------------------------------------------------

Value = str | bytes


def ldif_entry(dn: str, attributes: dict[str, Iterable[Value]]) -> str:
    """One LDIF record; bytes and values LDIF can't carry as-is are written base64 (``::``)."""
    lines = [f"dn: {dn}"]
    for name, values in attributes.items():
        for value in values:
            raw = value.encode() if isinstance(value, str) else value
            text = value if isinstance(value, str) else ""
            safe = text and text.isascii() and text.isprintable() and text[0] not in " :<"
            safe = safe and not text.endswith(" ")
            lines.append(f"{name}: {text}" if safe else f"{name}:: {base64.b64encode(raw).decode()}")
    return "\n".join(lines) + "\n\n"


def mailbox_guid(name: str) -> bytes:
    """A stable 16-byte GUID per name, binary like AD's ``msExchMailboxGuid``."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.mailbox.test").bytes


# --- the server ----------------------------------------------------------------------------


class SlapdServer(ServerProcess):
    """One private slapd on loopback: LDAP (StartTLS offered) on ``port``, LDAPS on ``ldaps_port``.

    ``ldif`` is loaded with ``slapadd`` before the start; entries may belong to either suffix.
    """

    name = "slapd"
    binaries = ("slapd",)
    candidates = ("/usr/sbin/slapd", "/usr/local/sbin/slapd", "/usr/local/libexec/slapd")
    error = SlapdError
    temp_prefix = "sl"
    console_log = "slapd.log"  # -d: slapd stays in the foreground and logs to stderr
    log_files = (console_log,)
    host = HOST

    def __init__(self, ldif: str, *, binary: str | None = None, start_timeout: float = 20.0) -> None:
        super().__init__(binary=binary, start_timeout=start_timeout)
        self.ldif = ldif
        self.ca_file: Path | None = None
        self.port = 0
        self.ldaps_port = 0

    @property
    def url(self) -> str:
        return f"ldap://{HOST}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{HOST}:{self.ldaps_port}"

    def stop(self) -> None:
        super().stop()
        self.ca_file = None

    # -- internals --

    def _prepare(self, binary: str) -> None:
        root = self._dir
        for suffix_dir in ("legacy", "target"):
            (root / suffix_dir).mkdir(mode=0o700)
        ca = ThrowawayCA(root / "tls")
        self.ca_file, leaf = ca.ca_file, ca.issue("server", days=30)
        (root / "cutover-test.schema").write_text(TEST_SCHEMA)
        (root / "slapd.conf").write_text(self._render_conf(leaf))
        self.port, self.ldaps_port = free_ports(2)
        # slapadd ships beside slapd (it is slapd under another name on Debian).
        slapadd = shutil.which("slapadd") or str(Path(binary).with_name("slapadd"))
        records = [r for r in (self._base_ldif() + self.ldif).split("\n\n") if r.strip()]
        for suffix, name in ((LEGACY_SUFFIX, "legacy"), (TARGET_SUFFIX, "target")):
            # slapadd loads one database at a time and refuses entries outside its suffix.
            mine = [r for r in records if r.split("\n", 1)[0].lower().endswith(suffix)]
            ldif = root / f"{name}.ldif"
            ldif.write_text("\n\n".join(mine) + "\n")
            done = subprocess.run(
                [slapadd, "-q", "-f", str(root / "slapd.conf"), "-b", suffix, "-l", str(ldif)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if done.returncode != 0:
                raise SlapdError(f"slapadd -b {suffix} failed ({done.returncode}):\n{done.stderr}")

    def _base_ldif(self) -> str:
        out = [
            ldif_entry(LEGACY_SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": ["legacy"],
                                       "o": ["Legacy mail"]}),
            ldif_entry(TARGET_SUFFIX, {"objectClass": ["dcObject", "organization"], "dc": ["target"],
                                       "o": ["Target directory"]}),
        ]  # fmt: skip
        for dn, password in ((READER_DN, READER_PASSWORD), (LIMITED_DN, LIMITED_PASSWORD)):
            out.append(
                ldif_entry(dn, {"objectClass": ["organizationalRole", "simpleSecurityObject"],
                                "cn": [dn.split(",")[0][3:]], "userPassword": [password]})
            )  # fmt: skip
        return "".join(out)

    def _render_conf(self, leaf: Leaf) -> str:
        root = self._dir
        schema_dir = _first_dir(_SCHEMA_DIRS, "core.schema")
        if schema_dir is None:
            raise SlapdError(f"OpenLDAP's core.schema is in none of {_SCHEMA_DIRS}: is slapd installed?")
        module_dir = _first_dir(_MODULE_DIRS, "back_mdb.la")
        lines = [
            "# Generated by tests/servers/slapd.py for one test module; deleted on stop().",
            *(f"include {schema_dir}/{name}.schema" for name in ("core", "cosine", "inetorgperson", "misc")),
            f"include {root}/cutover-test.schema",
            f"pidfile {root}/slapd.pid",
            f"argsfile {root}/slapd.args",
            f"TLSCACertificateFile {self.ca_file}",
            f"TLSCertificateFile {leaf.cert}",
            f"TLSCertificateKeyFile {leaf.key}",
            # slapd's default, written out: a search that doesn't page stops at 500 entries.
            f"sizelimit {SIZE_LIMIT}",
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by users read by * none",
        ]
        if module_dir is not None:  # built without modules (some distributions): mdb is built in
            lines[1:1] = [f"modulepath {module_dir}", "moduleload back_mdb"]
        for suffix, name in ((LEGACY_SUFFIX, "legacy"), (TARGET_SUFFIX, "target")):
            lines += [
                "",
                "database mdb",
                f'suffix "{suffix}"',
                f"directory {root}/{name}",
                "maxsize 67108864",
                # The export account may page through everything; the limited one may not.
                f'limits dn.exact="{READER_DN}" size.prtotal=unlimited',
                "index objectClass eq",
            ]
        return "\n".join(lines) + "\n"

    def _argv(self, binary: str) -> list[str]:
        urls = f"ldap://{HOST}:{self.port}/ ldaps://{HOST}:{self.ldaps_port}/"
        return [binary, "-d", "stats", "-f", str(self._dir / "slapd.conf"), "-h", urls]

    def _ports(self) -> list[int]:
        return [self.port, self.ldaps_port]


find_slapd = SlapdServer.find  # the binary's path, or None when it isn't installed


def _first_dir(candidates: tuple[str, ...], marker: str) -> str | None:
    return next((d for d in candidates if os.path.exists(os.path.join(d, marker))), None)


# --- the lab directory ---------------------------------------------------------------------

BULK = 520  # more than SIZE_LIMIT on both sides: an export that doesn't page can't see them all
LEGACY_PEOPLE = f"ou=people,{LEGACY_SUFFIX}"
LEGACY_IPLANET = f"ou=iplanet,{LEGACY_SUFFIX}"
LEGACY_QMAIL = f"ou=qmail,{LEGACY_SUFFIX}"
LEGACY_CLEAN = f"ou=clean,{LEGACY_SUFFIX}"
TARGET_CORP = f"ou=corp,{TARGET_SUFFIX}"
TARGET_CLEAN = f"ou=clean,{TARGET_SUFFIX}"
HOME_MDB = f"cn=DB01,cn=Databases,{TARGET_SUFFIX}"  # a DN value only: nothing needs to be there


def _ou(dn: str) -> str:
    return ldif_entry(dn, {"objectClass": ["organizationalUnit"], "ou": [dn.split(",")[0][3:]]})


def legacy_person(
    parent: str,
    uid: str,
    mail: str | None,
    *,
    classes: tuple[str, ...] = ("inetLocalMailRecipient",),
    **attributes: list[Value],
) -> str:
    """An inetOrgPerson with mail and whatever mail attributes the preset under test reads."""
    attrs: dict[str, Iterable[Value]] = {
        "objectClass": ["inetOrgPerson", *classes], "uid": [uid], "cn": [uid.title()], "sn": [uid],
    }  # fmt: skip
    if mail is not None:
        attrs["mail"] = [mail]
    attrs.update(attributes)
    return ldif_entry(f"uid={uid},{parent}", attrs)


def target_user(
    parent: str,
    name: str,
    primary: str | None,
    *aliases: str,
    mailbox: bool = True,
    upn: str | None = None,
    uac: int = 512,
    mail: str | None = None,
) -> str:
    """An AD-style user: SMTP:/smtp: proxyAddresses, a UPN and, if mailbox-enabled, a mailbox GUID."""
    attrs: dict[str, Iterable[Value]] = {
        "objectClass": ["user"], "cn": [name], "sn": [name], "sAMAccountName": [name],
        "userAccountControl": [str(uac)], "userPrincipalName": [upn or f"{name}@legacy.test"],
        "proxyAddresses": [*([f"SMTP:{primary}"] if primary else []), *(f"smtp:{a}" for a in aliases),
                           f"X500:/o=Legacy/ou=Users/cn={name}"],
    }  # fmt: skip
    if mail or primary:
        attrs["mail"] = [mail or primary or ""]
    if mailbox:
        attrs["msExchMailboxGuid"] = [mailbox_guid(name)]
        attrs["homeMDB"] = [HOME_MDB]
    return ldif_entry(f"cn={name},{parent}", attrs)


def lab_ldif(bulk: int = BULK) -> str:
    """The seeded directories, with the deliberate problems the directory checks must find.

    Source ``ou=people`` (preset inetlocalmailrecipient, ``status = inetUserStatus``,
    ``mailbox = mailDeliveryOption``) against target ``ou=corp`` (preset ad):

    ========  ==========================================================================
    alice     alias ``a@legacy.test`` missing from her proxyAddresses; shares ``info@`` with carol
    bob       no target object at all (nor for his alias ``robert@``)
    carol     fine on the target, owns ``info@`` there
    postmstr  ``mailLocalAddress: @legacy.test``: a catch-all
    judy      ``*@branch.test``: a wildcard; primary on the second domain ``branch.test``
    frank     ``inetUserStatus: inactive``: disabled, absent on the target (that's fine)
    grace     forward-only (``mailDeliveryOption: forward``, routed to elsewhere.example);
              the target has her as a mail user without a mailbox (that's fine)
    heidi     her target object has addresses but no mailbox
    erin      target erin also owns ``smtp:Sales@Legacy.test``, the sales group's address
    ivan      target UPN ``ivan petrov@legacy.test`` (space), proxy ``smtp:ivan`` (no domain)
    kim       target only, disabled, UPN local part of 70 characters
    userNNNN  ``bulk`` clean people on both sides
    ========  ==========================================================================

    ``ou=iplanet`` and ``ou=qmail`` hold a few people in those schemas; ``ou=clean`` on both
    sides is a directory pair with nothing wrong.
    """
    legacy = [_ou(dn) for dn in (LEGACY_PEOPLE, LEGACY_IPLANET, LEGACY_QMAIL, LEGACY_CLEAN)]
    people, mail_user = LEGACY_PEOPLE, ("inetLocalMailRecipient", "inetMailUser", "inetUser")
    legacy += [
        legacy_person(people, "alice", "alice@legacy.test",
                      mailLocalAddress=["alice.smith@legacy.test", "a@legacy.test", "info@legacy.test"]),
        legacy_person(people, "bob", "bob@legacy.test", mailLocalAddress=["robert@legacy.test"]),
        legacy_person(people, "carol", "carol@legacy.test", mailLocalAddress=["info@legacy.test"]),
        legacy_person(people, "postmaster", "postmaster@legacy.test", mailLocalAddress=["@legacy.test"]),
        legacy_person(people, "judy", "judy@branch.test", mailLocalAddress=["*@branch.test"]),
        legacy_person(people, "frank", "frank@legacy.test", classes=mail_user, inetUserStatus=["inactive"]),
        legacy_person(people, "grace", "grace@legacy.test", classes=mail_user,
                      mailRoutingAddress=["grace@elsewhere.example"], mailDeliveryOption=["forward"]),
        legacy_person(people, "heidi", "heidi@legacy.test", classes=mail_user,
                      inetUserStatus=["active"], mailDeliveryOption=["mailbox"]),
        legacy_person(people, "erin", "erin@legacy.test"),
        legacy_person(people, "ivan", "ivan@legacy.test"),
        *(legacy_person(people, f"user{i:04d}", f"user{i:04d}@legacy.test") for i in range(bulk)),
    ]  # fmt: skip
    iplanet = ("inetMailUser", "inetUser")
    legacy += [
        legacy_person(LEGACY_IPLANET, "ip1", "ip1@legacy.test", classes=iplanet,
                      mailAlternateAddress=["ip1.alt@legacy.test"], mailEquivalentAddress=["@iplanet.test"],
                      inetUserStatus=["active"], mailDeliveryOption=["mailbox"]),
        legacy_person(LEGACY_IPLANET, "ip2", "ip2@legacy.test", classes=iplanet,
                      mailDeliveryOption=["forward"], mailForwardingAddress=["ip2@elsewhere.example"]),
        legacy_person(LEGACY_IPLANET, "ip3", "ip3@legacy.test", classes=iplanet, inetUserStatus=["inactive"]),
        legacy_person(LEGACY_QMAIL, "q1", "q1@legacy.test", classes=("qmailUser",),
                      mailAlternateAddress=["q1.alt@legacy.test"], accountStatus=["active"]),
        legacy_person(LEGACY_QMAIL, "q2", "q2@legacy.test", classes=("qmailUser",), accountStatus=["noaccess"]),
        legacy_person(LEGACY_QMAIL, "q3", "q3@legacy.test", classes=("qmailUser",), deliveryMode=["nolocal"],
                      mailForwardingAddress=["q3@elsewhere.example"]),
        *(legacy_person(LEGACY_CLEAN, f"c{i}", f"c{i}@clean.test", mailLocalAddress=[f"c{i}.alias@clean.test"])
          for i in range(1, 4)),
    ]  # fmt: skip
    users, groups = f"ou=users,{TARGET_CORP}", f"ou=groups,{TARGET_CORP}"
    target = [_ou(dn) for dn in (TARGET_CORP, users, groups, TARGET_CLEAN)]
    target += [
        target_user(users, "alice", "alice@legacy.test", "alice.smith@legacy.test"),
        target_user(users, "carol", "carol@legacy.test", "info@legacy.test"),
        target_user(users, "postmaster", "postmaster@legacy.test"),
        target_user(users, "judy", "judy@branch.test", upn="judy@branch.test"),
        target_user(users, "grace", "grace@legacy.test", mailbox=False),
        target_user(users, "heidi", "heidi@legacy.test", mailbox=False),
        target_user(users, "erin", "erin@legacy.test", "Sales@Legacy.test"),
        target_user(users, "ivan", "ivan@legacy.test", "ivan", upn="ivan petrov@legacy.test"),
        target_user(users, "kim", "kim@legacy.test", uac=514, upn=f"{'k' * 70}@legacy.test"),
        ldif_entry(f"cn=sales,{groups}", {"objectClass": ["group"], "cn": ["sales"],
                                          "mail": ["sales@legacy.test"],
                                          "proxyAddresses": ["SMTP:sales@legacy.test"]}),
        *(target_user(users, f"user{i:04d}", f"user{i:04d}@legacy.test") for i in range(bulk)),
        *(target_user(TARGET_CLEAN, f"c{i}", f"c{i}@clean.test", f"c{i}.alias@clean.test",
                      upn=f"c{i}@clean.test") for i in range(1, 4)),
    ]  # fmt: skip
    return "".join(legacy + target)
