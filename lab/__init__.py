"""The lab: fake mail platforms that speak the real protocols, for ``cutover demo`` and the tests.

``embedded.Lab`` starts, in this process and with nothing but this package installed (no Dovecot, no
root, no external binary), a legacy IMAP/POP3 platform with 50 mailboxes and seeded problems, a
size-limited IMAP target, its SMTP hub, two LDAP directories and a DNS server, on loopback ports
the kernel picks; ``plan.write_plan`` writes an ordinary plan for them. ``data`` says what is seeded.

Libraries: Twisted (twisted.mail for IMAP, POP3 and SMTP, twisted.names for DNS) and ldaptor for
LDAP, all on one reactor thread. Twisted's protocol implementations are mature and speak the real
wire protocols, so the engine's own IMAP client, poplib, smtplib, ldap3 and dnspython talk to them
over TCP/UDP as they would to production servers; each module says what it had to change and why.

The lab is not the product: it imports nothing of ``cockpit``, ``checks`` or ``runners``, and of the
product only ``cockpit.demo`` (the ``cutover demo`` command, which ``cockpit.cli`` imports only when
that command runs) imports it. Both rules are import-linter contracts in ``pyproject.toml``.
"""
