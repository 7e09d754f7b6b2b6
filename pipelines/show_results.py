"""Print the results of the latest ``igpo_pipeline`` run and where to look further.

    python -m pipelines.show_results [--run RUN_NAME_OR_ID] [--out FILE]

``--out`` also writes the results table to FILE: ``make demo`` writes ``benchmarks/results/demo_tiny_cpu.txt``,
which the README quotes verbatim (tests/test_readme.py keeps the two equal).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("ZENML_ANALYTICS_OPT_IN", "false")


def main(argv: list[str] | None = None) -> None:
    from zenml.client import Client

    from pipelines.stack import mlflow_tracking_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run name or id (default: the latest igpo_pipeline run)")
    parser.add_argument("--out", help="also write the results table to this file")
    args = parser.parse_args(argv)
    client = Client()
    if args.run:
        run = client.get_pipeline_run(args.run)
    else:
        run = client.get_pipeline("igpo_pipeline").last_run
    report = run.steps["build_report"]
    print(f"\nIGPO demo results, run {run.name} ({run.status.value})\n")
    results = str(report.outputs["results"][0].load()).rstrip("\n") + "\n"
    print(results, end="")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(results)
        print(f"(written to {args.out})")
    print(
        "\nWhere to look:\n"
        f"  report:    open the 'report' artifact of step build_report in the dashboard\n"
        f"  dashboard: make dashboard   (http://127.0.0.1:8237, runs > {run.name}); stop with .venv/bin/zenml logout --local\n"
        f"  MLflow:    .venv/bin/mlflow ui --backend-store-uri {mlflow_tracking_uri()}   (http://127.0.0.1:5000)\n"
        f"  per-step metrics, checkpoints and tables are artifacts of run {run.id}"
    )


if __name__ == "__main__":
    main()
