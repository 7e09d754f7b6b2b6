"""Benchmarks: scripts that measure and print numbers (see benchmarks/README.md); never pass/fail on time."""
