"""LDAPv3 for the lab: ldaptor's ``LDAPServer`` over an in-memory tree, plus simple paged results.

Why ldaptor: it is the pure-Python LDAP server of the Twisted project (BER codec, simple bind,
search with the whole RFC 4515 filter language, in-memory trees), so the same reactor runs every
lab server. Its last release (21.2) is from 2021 but it runs unchanged on current Twisted; the
only other way would be a hand-written BER server. It refuses any critical control it doesn't
know, and our directory export pages critically (RFC 2696, as Active Directory and OpenLDAP
require past their size limits), so this module adds the paged-results control: each page is a
slice of the full result, the cookie is the offset.

Binds: anonymous, or simple bind with an entry's ``userPassword`` (plain text in the lab).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import protocol
from twisted.python import components

with warnings.catch_warnings():
    # ldaptor still spells pyparsing's pre-3.0 names and passlib imports ``crypt``: their warnings.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldaptor.inmemory import ReadOnlyInMemoryLDAPEntry
    from ldaptor.interfaces import IConnectedLDAPEntry
    from ldaptor.protocols import pureber, pureldap
    from ldaptor.protocols.ldap import distinguishedname, ldaperrors
    from ldaptor.protocols.ldap.ldapserver import LDAPServer

PAGED_RESULTS = b"1.2.840.113556.1.4.319"

Attributes = Mapping[str, Sequence[str | bytes]]


def build_tree(suffix: str, root_attributes: Attributes, entries: Sequence[tuple[str, Attributes]]) -> Any:
    """An in-memory tree: ``entries`` are (DN, attributes), parents before their children."""
    root = ReadOnlyInMemoryLDAPEntry(suffix, _encoded(root_attributes))
    by_dn: dict[str, Any] = {_key(suffix): root}
    for dn, attributes in entries:
        rdn, _, parent = dn.partition(",")
        child = by_dn[_key(parent)].addChild(rdn, _encoded(attributes))
        by_dn[_key(dn)] = child
    return root


def _key(dn: str) -> str:
    return str(distinguishedname.DistinguishedName(dn).getText()).lower()


def _encoded(attributes: Attributes) -> dict[str, list[bytes]]:
    return {k: [v if isinstance(v, bytes) else v.encode() for v in vs] for k, vs in attributes.items()}


class PagedLDAPServer(LDAPServer):
    """ldaptor's server with RFC 2696 simple paged results."""

    def handle(self, msg: Any) -> None:
        self._message_id = msg.id  # handlers run synchronously from here: the id of the request
        super().handle(msg)

    def handle_LDAPSearchRequest(
        self, request: Any, controls: Sequence[tuple[bytes, bool, bytes]] | None, reply: Callable[[Any], None]
    ) -> Any:
        paged = [c for c in controls or () if c[0] == PAGED_RESULTS]
        if not paged:
            return super().handle_LDAPSearchRequest(request, controls, reply)
        self.checkControls([c for c in controls or () if c[0] != PAGED_RESULTS])
        size, cookie = _decode_paging(paged[0][2])
        message_id = self._message_id
        root = IConnectedLDAPEntry(self.factory)
        found = root.lookup(distinguishedname.DistinguishedName(request.baseObject))
        found.addCallback(
            lambda base: base.search(
                filterObject=request.filter,
                attributes=request.attributes,
                scope=request.scope,
                derefAliases=request.derefAliases,
                typesOnly=request.typesOnly,
            )
        )

        def send_page(entries: list[Any]) -> None:
            start = int(cookie or b"0")
            end = len(entries) if size <= 0 else start + size
            for entry in entries[start:end]:
                reply(_result_entry(entry, request.attributes))
            following = str(end).encode() if end < len(entries) else b""
            done = pureldap.LDAPSearchResultDone(resultCode=ldaperrors.Success.resultCode)
            control = (PAGED_RESULTS, None, _encode_paging(len(entries), following))
            self.transport.write(pureldap.LDAPMessage(done, controls=[control], id=message_id).toWire())

        def failed(reason: Any) -> Any:
            reason.trap(ldaperrors.LDAPException)
            return pureldap.LDAPSearchResultDone(
                resultCode=reason.value.resultCode, errorMessage=reason.value.message
            )

        found.addCallback(send_page)
        found.addErrback(failed)
        return found


def _result_entry(entry: Any, wanted: Sequence[bytes]) -> Any:
    if wanted and b"*" not in wanted:
        attributes = [(k, entry.get(k)) for k in wanted if k in entry]
    else:
        attributes = list(entry.items())
    return pureldap.LDAPSearchResultEntry(objectName=entry.dn.getText(), attributes=attributes)


def _decode_paging(value: bytes) -> tuple[int, bytes]:
    """``SEQUENCE { size INTEGER, cookie OCTET STRING }`` (RFC 2696 §2)."""
    decoded, _ = pureber.berDecodeObject(pureber.BERDecoderContext(), value)
    size, cookie = decoded.data
    return int(size.value), bytes(cookie.value)


def _encode_paging(total: int, cookie: bytes) -> bytes:
    sequence = pureber.BERSequence([pureber.BERInteger(total), pureber.BEROctetString(cookie)])
    return bytes(sequence.toWire())


class DirectoryFactory(protocol.ServerFactory):
    protocol = PagedLDAPServer

    def __init__(self, root: Any) -> None:
        self.root = root


# ldaptor's server finds the tree by adapting its factory (its documented way of serving one).
components.registerAdapter(lambda factory: factory.root, DirectoryFactory, IConnectedLDAPEntry)
