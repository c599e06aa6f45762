"""``[proxy.smtp]``: defaults, values, and errors that name the file, the line and the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from runners.errors import PlanError
from runners.plan.locate import KeyLocator
from runners.plan.proxy_smtp_options import ProxySmtpSettings, load_proxy_smtp
from runners.plan.tables import Document, Table


def _load(text: str, base: Path = Path("/plans")) -> ProxySmtpSettings:
    root = Table(Document("plan.toml", KeyLocator(text)), (), tomllib.loads(text))
    return load_proxy_smtp(root.table("proxy"), base)


def test_defaults_without_the_table() -> None:
    assert _load("[proxy]\n") == ProxySmtpSettings()
    assert _load("") == ProxySmtpSettings()
    assert ProxySmtpSettings().store_and_forward is False


def test_values_and_a_spool_next_to_the_plan() -> None:
    settings = _load(
        '[proxy]\n[proxy.smtp]\nstore_and_forward = true\nspool_dir = "spool"\nretry_first_seconds = 30\n'
        "retry_backoff = 3\nretry_max_seconds = 600\ngive_up_hours = 48\nmax_message_bytes = 2048\n"
        'max_recipients = 5\nhostname = "mx.example.test"\nplain_auth_from_loopback = false\n'
    )
    assert settings.store_and_forward and settings.spool_dir == Path("/plans/spool")
    assert (settings.max_message_bytes, settings.max_recipients, settings.hostname) == (
        2048,
        5,
        "mx.example.test",
    )
    assert [settings.retry_delay(n) for n in (1, 2, 3, 4, 5)] == [30, 90, 270, 600, 600]
    assert settings.retry_delay(10_000) == 600  # no float overflow
    assert settings.plain_auth_from_loopback is False


@pytest.mark.parametrize(
    ("body", "line", "key", "words"),
    [
        ("store_and_forward = true\n", 3, "proxy.smtp.store_and_forward", 'needs "spool_dir"'),
        ("max_recipent = 4\n", 3, "proxy.smtp.max_recipent", 'did you mean "max_recipients"'),
        ("max_message_bytes = 12\n", 3, "proxy.smtp.max_message_bytes", "at least 1024"),
        ('hostname = "mx example"\n', 3, "proxy.smtp.hostname", "not a host name"),
        ("retry_first_seconds = 10\nretry_max_seconds = 5\n", 4, "proxy.smtp.retry_max_seconds", "at least"),
        ("retry_backoff = 0.5\n", 3, "proxy.smtp.retry_backoff", "at least 1"),
        ('store_and_forward = "yes"\n', 3, "proxy.smtp.store_and_forward", "true or false"),
    ],
)
def test_errors_name_file_line_and_key(body: str, line: int, key: str, words: str) -> None:
    with pytest.raises(PlanError) as error:
        _load("[proxy]\n[proxy.smtp]\n" + body)
    assert (error.value.path, error.value.line, error.value.key) == ("plan.toml", line, key)
    assert words in error.value.message


def test_bounce_via_needs_store_and_forward() -> None:
    with pytest.raises(PlanError) as error:
        _load('[proxy]\n[proxy.smtp]\nbounce_via = "legacy"\n')
    assert (error.value.line, error.value.key) == (3, "proxy.smtp.bounce_via")
    assert "store_and_forward" in error.value.message
