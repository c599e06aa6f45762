"""What the cutover window's last steps call: settled (the probe through the new MX, late mail caught
from the legacy), closed (the wave's report for sign-off) and rolled back (what reached the target
since the switch copied back to the legacy with the same engine). Library functions only: the
window's lifecycle (runners/window) decides when each runs and records it. See docs/settle.md.
"""
