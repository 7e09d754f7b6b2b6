"""A step's cache key includes the project's code and numeric library versions (igpo.provenance), so a change
in igpo/ re-runs the steps instead of replaying results of the old code."""

from __future__ import annotations

from zenml import pipeline, step
from zenml.enums import ExecutionStatus

import igpo.provenance
from pipelines.igpo import CACHE_POLICY


@step
def double(x: int) -> int:
    return 2 * x


@pipeline(enable_cache=True, cache_policy=CACHE_POLICY)
def doubling(x: int = 3) -> None:
    double(x)


def _status(run) -> ExecutionStatus:
    return run.steps["double"].status


def test_code_fingerprint_is_part_of_the_cache_key(monkeypatch):
    monkeypatch.setattr(igpo.provenance, "code_fingerprint", lambda: "code A")
    doubling.with_options(run_name="cache-key-1")()
    second = doubling.with_options(run_name="cache-key-2")()
    assert _status(second) == ExecutionStatus.CACHED
    monkeypatch.setattr(igpo.provenance, "code_fingerprint", lambda: "code B")
    third = doubling.with_options(run_name="cache-key-3")()
    assert _status(third) == ExecutionStatus.COMPLETED


def test_fingerprint_covers_every_source_file_of_the_package():
    igpo.provenance.code_fingerprint.cache_clear()
    first = igpo.provenance.code_fingerprint()
    assert len(first) == 64 and igpo.provenance.code_fingerprint() == first
