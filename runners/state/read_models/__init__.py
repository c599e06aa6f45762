"""Read models over the state store, joined with the plan: the cockpit's snapshots, ``cutover
status`` and the launch preview. They only read: a read-only store serves them all."""
