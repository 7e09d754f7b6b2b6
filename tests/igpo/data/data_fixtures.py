"""Helpers of the data tests: writers of the exact upstream file formats, and a real chat-completions
server on 127.0.0.1 that injects faults. (A plain module, not conftest, so tests can import it by name.)"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# ------------------------------------------------------------------------------- upstream file formats


def write_json_list(path: Path, rows: list) -> Path:
    """MetaMathQA-395K.json: one JSON list of objects."""
    path.write_text(json.dumps(rows, indent=1))
    return path


def write_jsonl(path: Path, rows: list, extra_lines: tuple[str, ...] = ()) -> Path:
    """GSM8K / MATH500 test.jsonl: one object per line (extra_lines are appended verbatim)."""
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


OPENR1_SCHEMA = pa.schema(
    [
        ("problem", pa.string()),
        ("solution", pa.string()),
        ("answer", pa.string()),
        ("problem_type", pa.string()),
        ("question_type", pa.string()),
        ("source", pa.string()),
        ("uuid", pa.string()),
        ("is_reasoning_complete", pa.list_(pa.bool_())),
        ("generations", pa.list_(pa.string())),
        ("correctness_math_verify", pa.list_(pa.bool_())),
        ("correctness_llama", pa.list_(pa.bool_())),
        ("finish_reasons", pa.list_(pa.string())),
        ("correctness_count", pa.int64()),
        ("messages", pa.list_(pa.struct([("content", pa.string()), ("role", pa.string())]))),
    ]
)


def openr1_row(uuid: str, problem: str, answer: str, generations: list[str], verified: list[bool],
               complete: list[bool], solution: str = "Reference solution. $x=1$.", **over) -> dict:
    """A row of OpenR1-Math-220k's default split, every column present."""
    row = {
        "problem": problem,
        "solution": solution,
        "answer": answer,
        "problem_type": "Algebra",
        "question_type": "math-word-problem",
        "source": "olympiads",
        "uuid": uuid,
        "is_reasoning_complete": complete,
        "generations": generations,
        "correctness_math_verify": verified,
        "correctness_llama": None,
        "finish_reasons": None,
        "correctness_count": sum(verified),
        "messages": [{"content": problem, "role": "user"}, {"content": generations[0] if generations else "", "role": "assistant"}],
    }
    row.update(over)
    return row


def write_openr1(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=OPENR1_SCHEMA), path)
    return path


AMC_SCHEMA = pa.schema([("id", pa.int64()), ("problem", pa.string()), ("answer", pa.float64()), ("url", pa.string())])


def write_amc(path: Path, rows: list[dict]) -> Path:
    """AI-MO/aimo-validation-amc's Parquet layout: the answers are float64."""
    pq.write_table(pa.Table.from_pylist(rows, schema=AMC_SCHEMA), path)
    return path


# ------------------------------------------------------------------------------- chat-completions server


@dataclass
class Reply:
    """What the fake server sends for one request."""

    status: int = 200
    content: str | None = None  # the assistant text of a chat completion
    body: bytes | None = None  # raw body instead (malformed replies)
    delay: float = 0.0
    headers: dict = field(default_factory=dict)


class FakeChatServer:
    """A ThreadingHTTPServer on an ephemeral port speaking POST /v1/chat/completions.

    ``behaviour(tag, attempt)`` decides each reply, where tag is the ``[rN]`` marker of the row in the
    prompt and attempt counts that tag's requests (from 1). Every request is logged with its status.
    """

    def __init__(self):
        self.behaviour: Callable[[str, int], Reply] = lambda tag, attempt: Reply(content="\\boxed{0}")
        self.log: list[dict] = []
        self.attempts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                    return
                request = json.loads(body)
                content = request["messages"][-1]["content"]
                match = re.search(r"\[(r\d+)\]", content)
                tag = match.group(1) if match else "?"
                with server.lock:
                    server.attempts[tag] += 1
                    attempt = server.attempts[tag]
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.behaviour(tag, attempt)
                    with server.lock:  # logged on arrival, so a reply still sleeping is already counted
                        server.log.append(
                            {"tag": tag, "attempt": attempt, "status": reply.status, "auth": self.headers.get("Authorization"),
                             "model": request.get("model")}
                        )
                    if reply.delay:
                        time.sleep(reply.delay)
                    if reply.body is not None:
                        payload = reply.body
                    elif reply.status == 200:
                        payload = json.dumps(
                            {"id": "chatcmpl-1", "object": "chat.completion", "model": request.get("model"),
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                                          "finish_reason": "stop"}]}
                        ).encode()
                    else:
                        payload = json.dumps({"error": {"message": f"status {reply.status}"}}).encode()
                    self._send(reply.status, payload, reply.headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout) or was killed
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, status: int, payload: bytes, headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answered(self, since: int = 0) -> Counter[str]:
        """How many 200 replies each tag got (from log entry ``since`` on)."""
        with self.lock:
            return Counter(e["tag"] for e in self.log[since:] if e["status"] == 200)

    def requested(self, since: int = 0) -> Counter[str]:
        with self.lock:
            return Counter(e["tag"] for e in self.log[since:])

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
