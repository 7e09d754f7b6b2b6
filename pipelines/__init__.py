"""ZenML pipelines: DAG wiring only (which step feeds which)."""
