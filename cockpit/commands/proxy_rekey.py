"""``cutover proxy rekey``: after a key rotation (the new key in ``[proxy.capture] key``, the old one in
``previous_keys``), seal every captured password anew under the new key, so the old one can go.
``cutover proxy run`` does the same when it starts with ``previous_keys`` set."""

from __future__ import annotations

import argparse
import json

from runners.connectors.captured import Keyring, Rekeyed, rekey
from runners.errors import MigrationError
from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.state.open_store import open_store


def rekey_plan(plan: Plan) -> Rekeyed:
    if plan.capture.key is None:
        raise MigrationError("[proxy.capture] has no key to seal with: set key (the new one) first")
    keyring = Keyring(plan.capture)
    store = open_store(plan)
    try:
        return rekey(store, keyring)
    finally:
        store.close()


def rekey_command(args: argparse.Namespace) -> int:
    done = rekey_plan(load_plan(args.plan))
    if getattr(args, "output", "text") == "json":
        print(json.dumps({"resealed": done.resealed, "current": done.current, "expired": done.expired}))
    else:
        print(f"{done.resealed} captured password(s) sealed under the current key, {done.current} already were, "
              f"{done.expired} expired and dropped")  # fmt: skip
    return 0
