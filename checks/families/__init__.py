"""One package or module per family of checks (dns, directory, source, target, capacity).

A module here registers its checks with ``checks.registry.check``; ``checks.catalog`` finds it.
"""
