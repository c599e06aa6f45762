"""``cutover demo``: start the lab (``lab/``), run the real checks and engine on it, show the outcome.

``scenario.run_scenario`` runs readiness, the pilot wave and ``verify --deep`` exactly as an operator
would; ``report`` says what was found and explained; ``command`` is the CLI entry. This is the only
package of the product that imports ``lab``, and ``cockpit.cli`` imports it only for ``cutover demo``.
"""
