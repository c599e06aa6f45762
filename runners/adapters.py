"""Which adapter serves which plan ``type``: the one registry for sources and targets.

The plan loader asks it which types exist (a target type nobody registered is refused at load
time, with file, line and key); the engine asks it how to open a session and what the target can
do. Adding a protocol is one ``register_source`` / ``register_target`` call, never an ``if type ==``.

An adapter's opener is named as ``"module:function"`` and imported on first use, so that loading
a plan doesn't load protocol code (and the plan package needs nothing from the connectors).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runners.errors import MigrationError
from runners.model import TargetCapabilities


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    type: str
    #: ``"module:function"``; the function takes ``(Endpoint, MailboxEntry)`` and returns an open,
    #: logged-in session, typed as ``runners.connectors.base.SourceSession`` or ``TargetSession`` so
    #: that mypy holds the adapter to the interface.
    opener: str
    #: Targets only: what the engine may ask of it (also readable before any session is open).
    capabilities: TargetCapabilities | None = None


_SOURCES: dict[str, AdapterSpec] = {}
_TARGETS: dict[str, AdapterSpec] = {}


def register_source(spec: AdapterSpec) -> None:
    _SOURCES[spec.type] = spec


def register_target(spec: AdapterSpec) -> None:
    if spec.capabilities is None:
        raise ValueError(f"target adapter {spec.type!r} must declare its capabilities")
    _TARGETS[spec.type] = spec


def unregister_target(kind: str) -> None:
    """Take a target type away again (tests that lift the refusal for one plan)."""
    _TARGETS.pop(kind, None)


def source_types() -> tuple[str, ...]:
    return tuple(_SOURCES)


def target_types() -> tuple[str, ...]:
    return tuple(_TARGETS)


def source_adapter(kind: str) -> AdapterSpec:
    spec = _SOURCES.get(kind)
    if spec is None:
        raise MigrationError(f"no source adapter for type {kind!r} (built: {', '.join(_SOURCES)})")
    return spec


def target_adapter(kind: str) -> AdapterSpec:
    spec = _TARGETS.get(kind)
    if spec is None:
        raise MigrationError(f"no target adapter for type {kind!r} (built: {', '.join(_TARGETS)})")
    return spec


def target_capabilities(kind: str) -> TargetCapabilities:
    caps = target_adapter(kind).capabilities
    assert caps is not None  # register_target insists
    return caps


def opener(spec: AdapterSpec) -> Callable[..., Any]:
    """The opener function; it takes ``(Endpoint, MailboxEntry)``. (Typed loosely: the plan package
    imports this registry, so naming the plan's types here would be an import cycle.)"""
    module, _, name = spec.opener.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return function


#: IMAP keeps bytes exactly (RFC 3501 APPEND), lets flags change (STORE), and batches as the plan
#: says (MULTIAPPEND has no count limit of its own). Dovecot's default mail_max_userip_connections
#: is 10; the engine needs one session per mailbox plus one for verify.
IMAP_TARGET = TargetCapabilities(
    keeps_bytes=True,
    batch_messages=None,
    batch_bytes=None,
    flags_mutable=True,
    connections_per_mailbox=10,
    imap_flags=True,
)

#: EWS (Exchange Server): re-renders MIME (no byte identity), PR_MESSAGE_FLAGS is read-only after
#: creation, CreateItem batches by count (exchangelib's 100) and by bytes (the 64 MiB request limit
#: less base64's third; the session lowers both to the plan's ``batch_items``/``request_limit_bytes``).
EWS_TARGET = TargetCapabilities(
    keeps_bytes=False,
    batch_messages=100,
    batch_bytes=48 * 1024 * 1024,
    flags_mutable=False,
    connections_per_mailbox=2,
    fetch_ahead=1,  # a batch is up to the request size: one fetched ahead per worker is enough
)

register_source(AdapterSpec("imap", "runners.connectors.imap_source:open_session"))
register_source(AdapterSpec("pop3", "runners.connectors.pop3_source:open_session"))
register_source(AdapterSpec("maildir", "runners.connectors.maildir_source:open_session"))
register_target(AdapterSpec("imap", "runners.connectors.imap_target:open_session", IMAP_TARGET))
register_target(AdapterSpec("ews", "runners.connectors.ews_target:open_session", EWS_TARGET))

#: Microsoft Graph re-renders MIME (no byte identity: verify compares what it keeps), lets read state,
#: flag and categories change (PATCH), and creates one message per request, several in flight within
#: the mailbox's budget (runners.connectors.graph_target); 100 per batch bounds what a crash leaves
#: uncertain. One session copies, one verifies.
GRAPH_TARGET = TargetCapabilities(
    keeps_bytes=False, batch_messages=100, batch_bytes=None, flags_mutable=True, connections_per_mailbox=2
)
register_target(AdapterSpec("graph", "runners.connectors.graph_target:open_session", GRAPH_TARGET))
