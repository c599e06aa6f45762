"""A lean IMAP4rev1 client for the copy engine's hot path.

imaplib (and imapclient on top of it) can't pipeline commands, stream FETCH bodies as they arrive,
or send MULTIAPPEND with non-synchronizing literals; the engine needs all three to keep up with
Dovecot. imapclient still does modified UTF-7 (``imapclient.imap_utf7``).
"""
