"""``cutover demo --keep`` in a real terminal: after the operator quits the cockpit, the command says
where it kept the state (and the state is there)."""

from __future__ import annotations

from pathlib import Path

from test_cockpit_tmux import CUTOVER, Tmux, tmux  # noqa: F401  (tmux: a fixture)

from runners.plan.loader import load_plan


def test_the_interactive_demo_says_where_it_kept_the_state(tmux: Tmux, tmp_path: Path) -> None:  # noqa: F811
    cache = tmp_path / "cache"
    tmux.start(str(CUTOVER), "demo", "--keep", env=(f"XDG_CACHE_HOME={cache}",))
    tmux.wait_for("cockpit", lambda text: "cutover — overview" in text and "palette" in text)
    tmux("send-keys", "-t", "cockpit", "q")
    kept = cache / "cutover" / "demo"
    tmux.wait_for("closing words", lambda text: "replaces it" in text)
    said = tmux("capture-pane", "-J", "-p", "-t", "cockpit").stdout  # -J: lines the pane wrapped, joined
    assert f"state kept in {kept} (plan {kept / 'plan.toml'})" in said, said
    assert load_plan(kept / "plan.toml").state_db.exists()
