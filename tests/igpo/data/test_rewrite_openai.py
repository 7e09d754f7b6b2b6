"""The openai backend against a real HTTP server on 127.0.0.1 that injects faults.

Every row is accounted for; retries happen only on timeouts, 429, 5xx and malformed replies; other
4xx stop the run with a clear error; an interrupted run (stopped by an error, or a killed process)
resumes from the cache without asking the teacher twice for an answered trace; the API key never
appears in logs, errors, reprs or the cache file.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from data_fixtures import Reply

from igpo.data.config import DemoTaskConfig, RewriteConfig
from igpo.data.demo_task import generate_demo_task
from igpo.data.rewrite import CACHE_FILE, OpenAIBackend, TeacherRequestError, rewrite_traces
from igpo.data.schema import metadata_of, rows_to_table, write_table
from igpo.verify import is_correct

KEY = "sk-test-DO-NOT-LEAK-4f9a2c"
REPO = Path(__file__).resolve().parents[3]


def _tagged_demo(n: int):
    """Demo rows whose questions carry a ``[rN]`` tag the server keys its behaviour on; and the concise
    trace (the right rewrite) per tag."""
    train, _ = generate_demo_task(DemoTaskConfig(num_train=n, num_test=1, num_steps=4, seed=7))
    rows, concise = [], {}
    for k, (row, meta) in enumerate(zip(train.to_pylist(), metadata_of(train))):
        rows.append({**row, "question": f"[r{k}] {row['question']}"})
        concise[f"r{k}"] = meta["concise_trace"]
    return rows_to_table(rows), concise


def _config(server, tmp_path, **openai) -> RewriteConfig:
    settings = {"base_url": server.base_url, "model": "teacher-1", "timeout_s": 1.0, "max_attempts": 3,
                "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "max_concurrency": 3, "api_key_env": "IGPO_TEST_KEY"}
    settings.update(openai)
    return RewriteConfig(backend="openai", token_budget=60, cache_dir=str(tmp_path / "cache"), show_progress=False, openai=settings)


def _assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text


def test_faults_are_retried_or_counted_and_every_row_is_accounted(tiny_tokenizer, chat_server, tmp_path, caplog, capfd, monkeypatch):
    caplog.set_level(logging.DEBUG)  # httpx, httpcore and tenacity included
    monkeypatch.setenv("IGPO_TEST_KEY", KEY)
    table, concise = _tagged_demo(10)

    def behaviour(tag: str, attempt: int) -> Reply:
        good = Reply(content=concise[tag], delay=0.05)
        if tag == "r0" and attempt == 1:
            return Reply(content=concise[tag], delay=2.5)  # past the client's 1 s timeout
        if tag == "r1" and attempt <= 2:
            return Reply(status=429, headers={"Retry-After": "0"})
        if tag == "r2" and attempt == 1:
            return Reply(status=500)
        if tag == "r3":
            return Reply(status=503)  # never recovers
        if tag == "r4":
            return Reply(body=b'{"choices": [{"message": ')  # malformed JSON, every time
        if tag == "r5":
            return Reply(body=b'{"object": "error"}')  # JSON, but not a chat completion
        if tag == "r6":
            return Reply(content=concise[tag].rsplit("\\boxed", 1)[0] + "\\boxed{99999}")  # the answer changed
        if tag == "r7":
            return Reply(content="Let me explain at length. " * 10 + concise[tag])  # right answer, over budget
        return good

    chat_server.behaviour = behaviour
    result = rewrite_traces(table, _config(chat_server, tmp_path), tiny_tokenizer)
    counts = result.counts
    assert counts.input_rows == 10 and counts.rewritten == 5 and counts.fallback_original == 5
    assert counts.within_budget + counts.rewritten + counts.fallback_original + counts.dropped == counts.input_rows
    assert counts.failures == {"answer_changed": 1, "malformed_response": 2, "over_budget": 1, "request_failed": 1}
    reasons = dict(zip(result.failures.column("row").to_pylist(), result.failures.column("reason").to_pylist()))
    ids = table.column("id").to_pylist()
    assert reasons == {ids[3]: "request_failed", ids[4]: "malformed_response", ids[5]: "malformed_response",
                       ids[6]: "answer_changed", ids[7]: "over_budget"}
    requested = chat_server.requested()
    assert requested["r0"] == 2 and requested["r1"] == 3 and requested["r2"] == 2  # retried until it worked
    assert requested["r3"] == requested["r4"] == requested["r5"] == 3  # max_attempts, then given up
    assert requested["r6"] == requested["r7"] == requested["r8"] == 1  # successes are never re-asked
    rows = {r["question"][:5].strip("[] "): r for r in result.table.to_pylist()}
    for tag in ("r0", "r1", "r2", "r8", "r9"):
        assert rows[tag]["reasoning"] == concise[tag] and is_correct(rows[tag]["reasoning"], rows[tag]["answer"])
    for tag in ("r3", "r6", "r7"):
        assert rows[tag]["reasoning"] == table.to_pylist()[int(tag[1:])]["reasoning"]  # kept the original
    assert {e["auth"] for e in chat_server.log} == {f"Bearer {KEY}"} and {e["model"] for e in chat_server.log} == {"teacher-1"}
    cache_bytes = (tmp_path / "cache" / CACHE_FILE).read_bytes()
    out, err = capfd.readouterr()
    _assert_no_key(caplog.text, out, err, cache_bytes.decode("utf-8", "replace"), result.failures.to_pandas().to_json())


def test_concurrency_is_bounded_and_used(tiny_tokenizer, chat_server, tmp_path):
    table, concise = _tagged_demo(9)
    chat_server.behaviour = lambda tag, attempt: Reply(content=concise[tag], delay=0.2)
    result = rewrite_traces(table, _config(chat_server, tmp_path, max_concurrency=3, api_key_env=None), tiny_tokenizer)
    assert result.counts.rewritten == 9
    assert 1 < chat_server.max_in_flight <= 3
    assert {e["auth"] for e in chat_server.log} == {None}  # no key configured: no Authorization header


@pytest.mark.parametrize("status", [401, 403, 404, 400])
def test_client_errors_stop_the_run_with_a_clear_error(tiny_tokenizer, chat_server, tmp_path, status, caplog):
    caplog.set_level(logging.DEBUG)
    table, _ = _tagged_demo(3)
    chat_server.behaviour = lambda tag, attempt: Reply(status=status, body=json.dumps({"error": f"bad key {KEY}"}).encode())
    with pytest.raises(TeacherRequestError) as err:
        rewrite_traces(table, _config(chat_server, tmp_path, max_concurrency=1), tiny_tokenizer, api_key=KEY)
    message = str(err.value)
    assert f"HTTP {status}" in message and f"{chat_server.base_url}/chat/completions" in message
    assert ("check the API key" in message) == (status in (401, 403))
    assert "***" in message  # the server echoed the key back; it was scrubbed
    assert len(chat_server.log) == 1  # not retried, and nothing else was sent after it
    _assert_no_key(message, repr(err.value), caplog.text)


def test_fail_row_on_status_turns_a_4xx_into_a_row_failure(tiny_tokenizer, chat_server, tmp_path):
    table, concise = _tagged_demo(3)
    chat_server.behaviour = lambda tag, attempt: Reply(status=400) if tag == "r1" else Reply(content=concise[tag])
    config = _config(chat_server, tmp_path, fail_row_on_status=(400, 413))
    result = rewrite_traces(table, config.model_copy(update={"fallback": "drop"}), tiny_tokenizer)
    assert result.counts.failures == {"request_rejected": 1} and result.counts.dropped == 1 and result.table.num_rows == 2


def test_key_from_argument_and_repr_never_show_it(chat_server, tmp_path):
    backend = OpenAIBackend(_config(chat_server, tmp_path).openai, api_key=KEY)
    _assert_no_key(repr(backend), repr(vars(backend)), str(vars(backend)))
    backend.close()


def test_stopped_run_resumes_from_cache_without_asking_twice(tiny_tokenizer, chat_server, tmp_path):
    """A run stopped by a 401 halfway keeps what it got; the re-run asks only for the rest."""
    table, concise = _tagged_demo(10)
    served = {"ok": 0}
    lock = threading.Lock()

    def flaky(tag: str, attempt: int) -> Reply:
        with lock:
            served["ok"] += 1
            if served["ok"] > 4:
                return Reply(status=401)
        return Reply(content=concise[tag], delay=0.02)

    chat_server.behaviour = flaky
    config = _config(chat_server, tmp_path, max_concurrency=2)
    with pytest.raises(TeacherRequestError, match="HTTP 401"):
        rewrite_traces(table, config, tiny_tokenizer, api_key=KEY)
    answered_first = chat_server.answered()
    assert 4 <= len(answered_first) < 10
    mark = len(chat_server.log)
    chat_server.behaviour = lambda tag, attempt: Reply(content=concise[tag])
    result = rewrite_traces(table, config, tiny_tokenizer, api_key=KEY)
    assert result.counts.rewritten == 10 and result.counts.cache_hits == len(answered_first)
    assert set(chat_server.requested(mark)) == {f"r{k}" for k in range(10)} - set(answered_first)
    assert all(n == 1 for n in chat_server.answered().values()) and len(chat_server.answered()) == 10


_CHILD = """
import json, sys
from transformers import PreTrainedTokenizerFast
from igpo.data.config import RewriteConfig
from igpo.data.rewrite import rewrite_traces
from igpo.data.schema import read_table
table = read_table(sys.argv[1])
config = RewriteConfig.model_validate_json(open(sys.argv[2]).read())
tokenizer = PreTrainedTokenizerFast.from_pretrained(sys.argv[3])
rewrite_traces(table, config, tokenizer)
print("finished")
"""


def test_killed_process_resumes_from_cache_without_asking_twice(chat_server, tmp_path, tiny_tokenizer):
    """A rewrite process SIGKILLed while its 4th request is in flight: the 3 answers it got are in the
    cache, and the re-run sends only the traces that never got an answer."""
    table, concise = _tagged_demo(8)
    arrived, release = threading.Event(), threading.Event()

    def blocking(tag: str, attempt: int) -> Reply:
        if len(chat_server.log) == 3:  # three answered; hold the fourth until the client is dead
            arrived.set()
            release.wait(60)
            return Reply(status=503)
        return Reply(content=concise[tag])

    chat_server.behaviour = blocking
    config = _config(chat_server, tmp_path, max_concurrency=1, timeout_s=60, api_key_env="IGPO_TEST_KEY")
    (tmp_path / "config.json").write_text(config.model_dump_json())
    write_table(table, tmp_path / "table.parquet")
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    env = {**os.environ, "IGPO_TEST_KEY": KEY, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path / "table.parquet"), str(tmp_path / "config.json"), str(tmp_path / "tok")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert arrived.wait(120), child.communicate(timeout=5)
        child.kill()
        _, child_err = child.communicate(timeout=30)
    finally:
        release.set()
        if child.poll() is None:
            child.kill()
    assert child.returncode != 0
    answered_first = chat_server.answered()
    assert len(answered_first) == 3
    mark = len(chat_server.log)
    chat_server.behaviour = lambda tag, attempt: Reply(content=concise[tag])
    result = rewrite_traces(table, config, tiny_tokenizer, api_key=KEY)
    assert result.counts.cache_hits == 3 and result.counts.rewritten == 8
    assert set(chat_server.requested(mark)) == {f"r{k}" for k in range(8)} - set(answered_first)
    assert all(n == 1 for n in chat_server.answered().values())
    _assert_no_key(child_err, (tmp_path / "cache" / CACHE_FILE).read_bytes().decode("utf-8", "replace"))
