"""Real mail servers (private Dovecot instances) that the test suite starts and stops itself."""
