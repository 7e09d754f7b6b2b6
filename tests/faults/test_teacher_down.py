"""The teacher endpoint down for a whole run (nothing listening on its port). tests/igpo/data/test_rewrite_openai.py
covers retries, 4xx errors, partial outages and resume from the cache; this adds the endpoint never answering."""

from __future__ import annotations

import socket
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "igpo" / "data"))
from data_fixtures import FakeChatServer, Reply

from igpo.data.config import DemoTaskConfig, RewriteConfig
from igpo.data.demo_task import generate_demo_task
from igpo.data.rewrite import CACHE_FILE, TeacherRequestError, rewrite_traces
from igpo.data.schema import metadata_of, rows_to_table


def _rows(n: int):
    train, _ = generate_demo_task(DemoTaskConfig(num_train=n, num_test=1, num_steps=4, seed=7))
    rows = [{**row, "question": f"[r{k}] {row['question']}"} for k, row in enumerate(train.to_pylist())]
    return rows_to_table(rows), [meta["concise_trace"] for meta in metadata_of(train)]


def _config(base_url: str, cache_dir: Path) -> RewriteConfig:
    return RewriteConfig(
        backend="openai", token_budget=60, cache_dir=str(cache_dir), show_progress=False,
        openai={"base_url": base_url, "model": "teacher-1", "timeout_s": 1.0, "max_attempts": 2,
                "backoff_initial_s": 0.01, "backoff_max_s": 0.02, "api_key_env": None},
    )


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # closed again: connections are refused


def _cached_rows(cache_dir: Path) -> int:
    with sqlite3.connect(cache_dir / CACHE_FILE) as conn:
        (tables,) = conn.execute("select group_concat(name) from sqlite_master where type='table'").fetchone()
        return sum(conn.execute(f"select count(*) from {name}").fetchone()[0] for name in tables.split(","))


@pytest.fixture
def warm_cache(tmp_path, tiny_tokenizer):
    """A cache holding the answers of a first run that reached the teacher for the first 3 of 6 rows."""
    table, concise = _rows(6)
    server = FakeChatServer()
    server.behaviour = lambda tag, attempt: Reply(content=concise[int(tag[1:])])
    try:
        rewrite_traces(table.slice(0, 3), _config(server.base_url, tmp_path / "cache"), tiny_tokenizer)
    finally:
        server.close()
    return table, tmp_path / "cache"


def test_endpoint_down_is_a_clear_error_and_keeps_the_cache(warm_cache, tiny_tokenizer):
    table, cache_dir = warm_cache
    cached_before = _cached_rows(cache_dir)
    assert cached_before >= 3
    url = _closed_port_url()
    with pytest.raises(TeacherRequestError, match=url.removesuffix("/v1")):
        rewrite_traces(table, _config(url, cache_dir), tiny_tokenizer)
    assert _cached_rows(cache_dir) == cached_before  # nothing dropped or overwritten
    # Once the teacher is back, only the rows it never answered are asked for.
    server = FakeChatServer()
    concise = _rows(6)[1]
    server.behaviour = lambda tag, attempt: Reply(content=concise[int(tag[1:])])
    try:
        result = rewrite_traces(table, _config(server.base_url, cache_dir), tiny_tokenizer)
    finally:
        server.close()
    assert result.counts.cache_hits == 3 and result.counts.rewritten == 6


def test_endpoint_down_for_the_whole_run_is_a_clear_error(tmp_path, tiny_tokenizer):
    table, _ = _rows(3)
    url = _closed_port_url()
    with pytest.raises(TeacherRequestError, match=url.removesuffix("/v1")):
        rewrite_traces(table, _config(url, tmp_path / "cache"), tiny_tokenizer)
