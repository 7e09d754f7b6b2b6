"""ZenML steps: one thin wrapper per stage over the core package ``igpo``."""
