"""The routing proxy: one IMAP/POP3/SMTP front door that sends each user to the legacy or the new platform.

``contracts`` holds what the proxy's parts agree on (a route, a login that a backend accepted, the
observers told of it, the relay that pipes a session once it is logged in); the listeners, the router,
the SMTP spool and the credential capture each live in their own modules and meet only there.
"""
