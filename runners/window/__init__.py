"""The cutover window of a wave (issue #11): copying → ready → final pass → switched → settled →
closed, and rolled back from any point after the switch, each step recorded in the state store.

``actor``       who acts: the OS user, the host, the SSH client
``stages``      where a wave stands, from the steps the store recorded (the read model)
``conditions``  what ``ready`` (and the final pass and switch's interlocks) check, each listed
``final_pass``  the last delta pass through the engine, timed (the users' downtime), with an ETA
``switch_step`` the directory's routing attribute and, for a domain's last wave, DNS; resumable
``driver``      runs a wave forward to a step, under the wave's lease, recording each step
``pending``     settled, closed and rolled back: hooks that refuse until they are built

It sits above the engine and the switch (import-linter's "peek | verify | window" layer).
"""
