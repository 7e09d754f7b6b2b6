"""Serve the bundled ZenML dashboard for the local store, with the first-visit onboarding form cleared.

    python -m pipelines.dashboard [--port 8237]      # what `make dashboard` runs
    zenml logout --local                             # stops the server

The dashboard shows its onboarding survey while the local user lacks either the
``finished_onboarding_survey`` metadata flag or an ``email_opted_in`` answer. The server's REST API drops
the email answer, so both are written on the local store directly, before the server starts on it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")

DEFAULT_PORT = 8237


def clear_onboarding() -> None:
    """Mark the active local user as onboarded (keeps its other metadata) and opted out of e-mails."""
    from zenml.client import Client

    client = Client()
    user = client.active_user
    metadata = {**(user.user_metadata or {}), "finished_onboarding_survey": True}
    client.update_user(user.id, updated_email_opt_in=False, updated_metadata=metadata)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"local port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    clear_onboarding()
    zenml = str(Path(sys.executable).with_name("zenml"))
    env = dict(os.environ, ZENML_AUTO_OPEN_DASHBOARD="false")
    subprocess.run([zenml, "login", "--local", "--port", str(args.port)], env=env, check=True)
    print(f"\nDashboard: http://127.0.0.1:{args.port}  (pipelines -> igpo_pipeline -> a run)")
    print(f"Stop it with: {zenml} logout --local")


if __name__ == "__main__":
    main()
