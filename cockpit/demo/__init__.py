"""``cutover demo``: an embedded lab and the scenario that runs the real engine and checks on it.

With only this package installed (no Dovecot, no root, no external binary), ``lab.Lab`` starts a
legacy IMAP/POP3 platform with 50 mailboxes and seeded problems, a size-limited IMAP target, its
SMTP hub, two LDAP directories and a DNS server, all in this process on loopback ports the kernel
picks. ``scenario.run_scenario`` then writes a plan for them and runs readiness, the pilot wave and
``verify --deep`` exactly as an operator would; ``report`` says what was found and explained.

Libraries: Twisted (twisted.mail for IMAP, POP3 and SMTP, twisted.names for DNS) and ldaptor for
LDAP, all on one reactor thread. Twisted's protocol implementations are mature and speak the real
wire protocols, so the engine's own IMAP client, poplib, smtplib, ldap3 and dnspython talk to them
over TCP/UDP as they would to production servers; each module says what it had to change and why.
"""
