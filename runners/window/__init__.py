"""The cutover window of a wave (issue #11): copying → ready → final pass → switched → settled →
closed, and rolled back from any point after the switch, each step recorded in the state store.

``actor``       who acts: the OS user, the host, the SSH client
``stages``      where a wave stands, from the steps the store recorded (the read model)
``conditions``  what ``ready`` (and the final pass and switch's interlocks) check, each listed
``final_pass``  the last delta pass through the engine, timed (the users' downtime), with an ETA
``switch_step`` the directory's routing attribute and, for a domain's last wave, DNS; resumable
``driver``      runs a wave forward to a step, under the wave's lease, recording each step
``settle_step`` settled: post checks (given by the command layer), the probe, the late-mail loop
``close_step``  closed: the wave's report, Markdown and JSON, in the state directory
``rollback_step`` rolled back: routing, DNS (``rollback_dns``) and the copy back; resumable

It sits above the engine, the switch and settle (import-linter's "window" layer, the top of runners).
"""
