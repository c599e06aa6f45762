"""The cutover switch's changes outside the tool: DNS records and the directory's routing attribute.

``records``       the RRsets a domain must serve after the switch (from the plan's ``[switch.dns]``)
``dns_query``     direct, non-recursive questions to one authoritative server; a zone's NS set
``dns_update``    what differs on the primary, and one TSIG-signed RFC 2136 UPDATE per zone
``dns_manual``    without a primary or key: the exact zone-file lines an operator applies
``dns_confirm``   waits until every authoritative server serves the records, or names who doesn't
``directory``     the routing attribute per user (LDAP modify, read back), and back for rollback

Nothing here knows about waves, the store or the screen: the wave's lifecycle (issue #11) calls these
and records what they report.
"""
