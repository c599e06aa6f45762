"""The plan and mailbox list for a running lab: an ordinary plan file, as an operator would write it.

Secrets go to files beside it (``file:`` references), so ``cutover status``/``check``/``run`` work on
the written plan like on any other while the lab is up on those ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lab import data
from lab.ews.demo import SERVICE_ACCOUNT
from lab.graph.demo import DEMO_APP_ID, DEMO_APP_SECRET, DEMO_TENANT_ID

if TYPE_CHECKING:
    from lab.embedded import Lab

PILOT = "pilot"
#: Marks a directory as a demo state directory, so that a rerun may clear it.
MARKER = ".cutover-demo"
SECRETS = {
    "legacy-master": data.LEGACY_MASTER[1],
    "target-master": data.TARGET_MASTER[1],
    "legacy-ldap": data.LEGACY_READER[1],
    "target-ldap": data.TARGET_READER[1],
}


def _ews_target(lab: Lab, password_file: Path) -> str:
    """The ``[target]`` table for the lab's EWS emulator (``Lab.start_ews``); the password in a file."""
    assert lab.ews is not None
    password_file.write_text(SERVICE_ACCOUNT[1] + "\n")
    password_file.chmod(0o600)
    return f"""[target]
type = "ews"
host = "{lab.host}"
port = {lab.ews.port}
auth = "basic"
service_account = "{SERVICE_ACCOUNT[0]}"
password = "file:{password_file}"
ca_file = "{lab.ews.ca_file}"
max_message_bytes = {data.TARGET_LIMIT}
timeout = 20
"""


def _graph_target(lab: Lab, secret_file: Path) -> str:
    """The ``[target]`` table for the lab's Graph emulator (``Lab.start_graph``); the secret in a file."""
    assert lab.graph is not None
    secret_file.write_text(DEMO_APP_SECRET + "\n")
    secret_file.chmod(0o600)
    return f"""[target]
type = "graph"
tenant_id = "{DEMO_TENANT_ID}"
client_id = "{DEMO_APP_ID}"
client_secret = "file:{secret_file}"
authority_url = "{lab.graph.graph_url}"
graph_url = "{lab.graph.graph_url}"
ca_file = "{lab.graph.ca_file}"
max_message_bytes = {data.TARGET_LIMIT}
timeout = 20
"""


def write_plan(lab: Lab, state_dir: Path) -> Path:
    """The plan and mailbox list for the lab, with the secrets in files beside them."""
    state_dir = state_dir.resolve()
    (state_dir / "secrets").mkdir(parents=True, exist_ok=True)
    (state_dir / MARKER).write_text("written by cutover demo; removed or replaced by the next demo\n")
    # Absolute paths: [directory.*] bind_password file: references are not resolved against the
    # plan's directory (reported; the endpoints' references are).
    pw = {name: state_dir / "secrets" / f"{name}.pw" for name in SECRETS}
    for name, value in SECRETS.items():
        pw[name].write_text(value + "\n")
        pw[name].chmod(0o600)
    rows = [f"{m.address},{m.address},{m.wave}" for m in lab.data.mailboxes]
    (state_dir / "mailboxes.csv").write_text("source,target,wave\n" + "\n".join(rows) + "\n")
    s = lab.services
    plan = state_dir / "plan.toml"
    target = f"""[target]
type = "imap"
host = "{lab.host}"
port = {s["target-imap"].port}
security = "plain"
auth = "master"
master_user = "{data.TARGET_MASTER[0]}"
master_password = "file:{pw["target-master"]}"
max_message_bytes = {data.TARGET_LIMIT}
timeout = 20
"""
    if lab.ews is not None:
        target = _ews_target(lab, state_dir / "secrets" / "target-ews.pw")
    if lab.graph is not None:
        target = _graph_target(lab, state_dir / "secrets" / "target-graph.secret")
    plan.write_text(
        f"""# Written by `cutover demo` for its embedded lab (every server on {lab.host}).
[source]
type = "imap"
host = "{lab.host}"
port = {s["legacy-imap"].port}
security = "plain"
auth = "master"
master_user = "{data.LEGACY_MASTER[0]}"
master_password = "file:{pw["legacy-master"]}"
timeout = 20

{target}
[mailboxes]
csv = "mailboxes.csv"

[[waves]]
name = "{PILOT}"
pilot = true

[[waves]]
name = "wave1"

[[waves]]
name = "wave2"

[state]
dir = "state"

[run]
workers = 4

[dns]
resolver = "{s["dns"].address}"
nameservers = {{ "{data.DOMAIN}" = ["{s["dns"].address}"] }}
legacy_mx = ["mx*.legacy.{data.DOMAIN}"]
target_mx = ["*.mail.cloud.example"]
spf_includes = ["spf.cloud.example"]
max_ttl = 300

[directory.source]
url = "{s["legacy-ldap"].url}"
base = "{data.LEGACY_PEOPLE}"
preset = "inetlocalmailrecipient"
bind_dn = "{data.LEGACY_READER[0]}"
bind_password = "file:{pw["legacy-ldap"]}"
timeout = 10

[directory.target]
url = "{s["target-ldap"].url}"
base = "{data.TARGET_USERS}"
preset = "ad"
bind_dn = "{data.TARGET_READER[0]}"
bind_password = "file:{pw["target-ldap"]}"
timeout = 10

[capacity]
smtp_hubs = ["{s["smtp-hub"].address}"]
mailbox_quota_bytes = 52428800
window_hours = 8
throughput = 20

[checks]
timeout = 60
""",
        encoding="utf-8",
    )
    return plan
