"""Length alignment of reasoning traces (SPEC section 1, "Length-aligned SFT"; section 4, step ``rewrite``).

The paper has a teacher LLM (LLaMA-4-Maverick) rewrite long OpenR1-Math traces, often over 10k tokens,
into concise ones that fit the dLLM's generation budget, then fine-tunes on them. Here
:func:`rewrite_traces` does that for any canonical table:

1. Measure every trace with the TARGET model's tokenizer (the budget is about what the dLLM generates,
   not about the teacher's tokens). Traces already within budget are kept as they are (configurable).
2. Ask the backend for a rewrite of each other trace; responses come from, and go to, a persistent
   cache keyed by sha256(backend, teacher model, sampling settings, system prompt, prompt template,
   rendered prompt), where the rendered prompt holds the trace. Each response is written the moment it
   arrives, so an interrupted run resumes without asking the teacher again. Failed requests are not
   cached, so a re-run retries them.
3. Accept a rewrite only if it states the original final answer (``igpo.verify``: the same verifier as
   the RL reward) and fits the budget. Anything else falls back per config, to the original trace or to
   no row, and is counted by reason.

Backends:

- ``openai``: any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, TGI, hosted APIs), with a
  bounded thread pool, retries with exponential backoff on timeouts, transport errors, 429, 5xx and
  malformed responses (tenacity), and an immediate error on any other 4xx that names the status and the
  endpoint. The API key comes from the environment variable named in the config, or from the
  ``api_key`` argument (the step layer resolves a ZenML secret into it); it is held in a wrapper whose
  repr hides it, is sent only in the Authorization header, and is scrubbed from every message built
  from a server's reply. It never reaches logs, errors or the cache.
- ``transformers``: a local causal LM (``AutoModelForCausalLM``) prompted through its chat template.
- ``extractive``: NOT a language model. A rule-based filter that keeps the clauses that contain an
  equation or arithmetic, drops the prose, and ends with the trace's own final answer as ``\\boxed{}``.
  It cannot paraphrase or shorten a long equation; a trace whose equations alone exceed the budget
  fails as over budget. It exists so the demo runs offline; on the demo task it recovers the concise
  trace exactly. For R1-style traces it condenses the part after ``</think>`` when that part states
  the answer, since R1 writes its summary there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import httpx
import pyarrow as pa
from pydantic import Field
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from igpo.config_base import StrictConfig
from igpo.data.config import OpenAIBackendConfig, RewriteConfig, TransformersBackendConfig
from igpo.data.schema import QUARANTINE_SCHEMA, rows_to_table, validate_table
from igpo.progress import ProgressReporter, as_mode, every_fraction
from igpo.verify import answers_match, extract_answer

logger = logging.getLogger(__name__)

CACHE_FILE = "rewrite_cache.sqlite"
FAILURE_REASONS = (
    "answer_changed",  # the rewrite states another final answer
    "answer_missing",  # the rewrite states no final answer
    "over_budget",  # the rewrite keeps the answer but is longer than the token budget
    "empty_response",  # the teacher answered with nothing (after stripping a <think> block)
    "request_failed",  # timeouts, transport errors, 429 or 5xx, still failing after every attempt
    "malformed_response",  # not JSON or no choices[0].message.content, after every attempt
    "request_rejected",  # a 4xx listed in openai.fail_row_on_status (e.g. context too long)
)


# --------------------------------------------------------------------------------------------- errors


class RowFailure(Exception):
    """One row's rewrite failed; ``reason`` is one of FAILURE_REASONS. The run goes on."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class TeacherRequestError(RuntimeError):
    """The teacher endpoint refused the request in a way retrying cannot fix (401, 403, 404, 400...).

    The run stops; responses already received stay in the cache."""


class RewriteCacheError(RuntimeError):
    """The cache file cannot be opened or read as the rewrite cache."""


class _Transient(Exception):
    """A failure worth retrying (timeout, transport error, 429, 5xx, malformed reply)."""

    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


class _Secret:
    """Holds the API key; its repr and str never show it, so it cannot leak through a log of locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with any occurrence of the key replaced (a server may echo a header back)."""
        return text.replace(self._value, "***") if self._value else text

    def __repr__(self) -> str:
        return "_Secret('***')"

    __str__ = __repr__


# --------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RewriteRequest:
    """What a backend gets for one trace: the fields, and the chat messages rendered from the config."""

    question: str
    trace: str
    answer: str
    messages: tuple[Mapping[str, str], ...]


def render_messages(config: RewriteConfig, question: str, trace: str, answer: str) -> tuple[dict[str, str], ...]:
    """The chat messages for one trace: the optional system prompt, then the filled template."""
    user = config.prompt_template.format(
        question=question,
        trace=trace,
        answer=answer,
        token_budget=config.token_budget,
        word_budget=max(1, config.token_budget * 3 // 4),
    )
    system = ({"role": "system", "content": config.system_prompt},) if config.system_prompt else ()
    return system + ({"role": "user", "content": user},)


def cache_key(config: RewriteConfig, backend: RewriteBackend, request: RewriteRequest) -> str:
    """sha256 of everything that determines the teacher's answer, and nothing secret."""
    payload = {
        "backend": backend.name,
        "model": backend.model_id,
        "params": backend.cache_params,
        "system_prompt": config.system_prompt,
        "prompt_template": config.prompt_template,
        "messages": list(request.messages),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class RewriteCache:
    """Teacher responses in a sqlite file, one row per cache key, committed as each response arrives.

    Thread-safe (one connection behind a lock): workers of the thread pool write as they finish, so a
    process killed mid-run loses at most the requests in flight.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False)
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, backend TEXT NOT NULL, "
                "model TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL)"
            )
            self._conn.commit()
        except sqlite3.DatabaseError as err:
            raise RewriteCacheError(f"{self.path}: not a usable rewrite cache ({err}); move it away to start afresh") from None

    def get(self, key: str) -> str | None:
        """The cached response for ``key``, or None."""
        with self._lock:
            row = self._conn.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, backend: str, model: str, response: str) -> None:
        """Store and commit one response."""
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)", (key, backend, model, response, time.time())
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


# --------------------------------------------------------------------------------------------- backends


class RewriteBackend(Protocol):
    """A teacher. ``complete`` serves one request (thread-safe; used with a pool of ``max_concurrency``);
    backends with ``batch_size > 1`` are called through ``complete_batch`` instead."""

    name: str
    model_id: str
    cache_params: dict[str, Any]
    cacheable: bool
    max_concurrency: int
    batch_size: int

    def complete(self, request: RewriteRequest) -> str: ...

    def complete_batch(self, requests: Sequence[RewriteRequest]) -> list[str | RowFailure]: ...


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z\\$(])")
_EQUATION_RE = re.compile(r"[=<>]|\\(?:approx|equiv|leq?|geq?|neq|cdot|times|frac|sqrt)\b")
_ARITHMETIC_RE = re.compile(r"\d\s*[-+*/^\u00d7]\s*\(?-?\d")
_ANSWER_STATEMENT_RE = re.compile(r"\\boxed|\\fbox|####|answer is", re.IGNORECASE)
_LEADING_CONNECTIVE_RE = re.compile(r"^(?:so|thus|then|hence|therefore|and|which gives|we get|this gives)\b[\s,]*", re.IGNORECASE)
_THINK_BLOCK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


def _split_clauses(sentence: str) -> list[str]:
    """Split at ", ", "; " and ": " outside brackets and $...$, so "f(x, y) = 3" stays whole."""
    clauses, depth, in_math, start = [], 0, False, 0
    for i, ch in enumerate(sentence):
        if ch == "$":
            in_math = not in_math
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch in ",;:" and depth == 0 and not in_math and (i + 1 == len(sentence) or sentence[i + 1].isspace()):
            clauses.append(sentence[start:i])
            start = i + 1
    clauses.append(sentence[start:])
    return [c.strip() for c in clauses if c.strip()]


def _compact(clause: str) -> str:
    clause = clause.strip().rstrip(".").strip()
    while True:
        stripped = _LEADING_CONNECTIVE_RE.sub("", clause)
        if stripped == clause:
            break
        clause = stripped
    clause = re.sub(r"\s*([=+*/])\s*", r"\1", clause)
    clause = re.sub(r"(?<=[\w)}\]])\s+-\s+(?=[\w(\\{])", "-", clause)
    return re.sub(r"\s+", " ", clause)


def extractive_condense(trace: str) -> str:
    """Rule-based condensation (see the module docstring): keep the equation and arithmetic clauses in
    order, drop prose, and end with ``\\boxed{answer}`` where answer is what the trace itself states."""
    text = trace
    if "</think>" in text:
        after = text.rsplit("</think>", 1)[1]
        if extract_answer(after) is not None:
            text = after
    text = re.sub(r"</?think>", "", text)
    answer = extract_answer(text)
    kept: list[str] = []
    for line in text.splitlines():
        for sentence in _SENTENCE_SPLIT.split(line.strip()):
            if not sentence or _ANSWER_STATEMENT_RE.search(sentence):
                continue
            for clause in _split_clauses(sentence):
                compact = _compact(clause)
                is_math = bool(compact) and bool(_EQUATION_RE.search(compact) or _ARITHMETIC_RE.search(compact))
                if is_math and (not kept or kept[-1] != compact):
                    kept.append(compact)
    if answer is not None:
        kept.append(f"\\boxed{{{answer}}}")
    return "\n".join(kept)


class ExtractiveBackend:
    """The offline rule-based condenser as a backend (no cache: it is cheaper than a cache lookup)."""

    name = "extractive"
    model_id = "rule-based-v1"
    cache_params: ClassVar[dict[str, Any]] = {}
    cacheable = False
    max_concurrency = 1
    batch_size = 1024

    def complete(self, request: RewriteRequest) -> str:
        return extractive_condense(request.trace)

    def complete_batch(self, requests: Sequence[RewriteRequest]) -> list[str | RowFailure]:
        return [extractive_condense(r.trace) for r in requests]


def resolve_api_key(config: OpenAIBackendConfig, api_key: str | None = None, environ: Mapping[str, str] | None = None) -> _Secret | None:
    """The key to send: the ``api_key`` argument (a resolved ZenML secret) first, then the environment
    variable named by ``config.api_key_env``; None when neither is set (a local server needs none)."""
    if api_key:
        return _Secret(api_key)
    environ = os.environ if environ is None else environ
    if config.api_key_env and environ.get(config.api_key_env):
        return _Secret(environ[config.api_key_env])
    if config.api_key_env or config.api_key_secret:
        where = f"${config.api_key_env}" if config.api_key_env else f"ZenML secret {config.api_key_secret!r}"
        logger.warning("no API key found (looked in %s); sending requests without an Authorization header", where)
    return None


class OpenAIBackend:
    """Client of an OpenAI-compatible ``POST {base_url}/chat/completions`` endpoint."""

    name = "openai"
    batch_size = 1
    cacheable = True

    def __init__(self, config: OpenAIBackendConfig, api_key: str | None = None, environ: Mapping[str, str] | None = None):
        self.config = config
        self.model_id = config.model
        self.max_concurrency = config.max_concurrency
        self.cache_params = {"temperature": config.temperature, "max_tokens": config.max_tokens}
        self.url = f"{config.base_url}/chat/completions"
        self._key = resolve_api_key(config, api_key, environ)
        self._client = httpx.Client(timeout=httpx.Timeout(config.timeout_s), follow_redirects=False)
        if api_key:
            self._key_source = "the api_key argument" + (f" (ZenML secret {config.api_key_secret!r})" if config.api_key_secret else "")
        else:
            self._key_source = f"${config.api_key_env}" if self._key else "nowhere (no key sent)"
        logger.info("openai backend: endpoint %s, model %s, key from %s", self.url, self.model_id, self._key_source)

    def __repr__(self) -> str:
        return f"OpenAIBackend(url={self.url!r}, model={self.model_id!r})"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _scrub(self, text: str) -> str:
        return self._key.scrub(text) if self._key else text

    def _wait(self, retry_state: Any) -> float:
        """Exponential backoff, lengthened to a server's Retry-After, capped at backoff_max_s."""
        base = wait_exponential(multiplier=self.config.backoff_initial_s, max=self.config.backoff_max_s)(retry_state)
        error = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(error, "retry_after", None) or 0.0
        return min(max(base, retry_after), self.config.backoff_max_s)

    def complete(self, request: RewriteRequest) -> str:
        """The teacher's text for one request; RowFailure once retries are spent, TeacherRequestError on a 4xx."""
        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            reraise=True,
            before_sleep=lambda state: logger.debug(
                "retrying after attempt %d: %s", state.attempt_number, state.outcome.exception()
            ),
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._post(request)
        except _Transient as err:
            raise RowFailure(err.reason, f"{err.detail} (after {self.config.max_attempts} attempts)") from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _post(self, request: RewriteRequest) -> str:
        payload = {
            "model": self.config.model,
            "messages": list(request.messages),
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        headers = {"Authorization": f"Bearer {self._key.reveal()}"} if self._key else {}
        try:
            response = self._client.post(self.url, json=payload, headers=headers)
        except httpx.TimeoutException:
            raise _Transient("request_failed", f"no answer from {self.url} within {self.config.timeout_s}s") from None
        except httpx.TransportError as err:
            raise _Transient("request_failed", self._scrub(f"{type(err).__name__} talking to {self.url}: {err}")) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Transient("request_failed", f"HTTP {status} from {self.url}", _retry_after(response))
        if status >= 300:
            snippet = self._scrub(response.text)[:300].strip()  # scrub first: a cut could split the key
            if status in self.config.fail_row_on_status:
                raise RowFailure("request_rejected", f"HTTP {status} from {self.url}: {snippet}")
            hint = f"; check the API key (taken from {self._key_source})" if status in (401, 403) else ""
            raise TeacherRequestError(
                f"teacher endpoint {self.url} answered HTTP {status} {response.reason_phrase}{hint}; server said: {snippet!r}"
            )
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _Transient("malformed_response", f"reply from {self.url} is not a chat completion") from None
        if not isinstance(content, str):
            raise _Transient("malformed_response", f"reply from {self.url} has no text content")
        return content


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; exponential backoff is good enough


class TransformersBackend:
    """A local causal LM as teacher: chat template, left-padded batches, greedy or seeded sampling."""

    name = "transformers"
    cacheable = True
    max_concurrency = 1

    def __init__(self, config: TransformersBackendConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config = config
        self.model_id = config.model_name_or_path + (f"@{config.revision}" if config.revision else "")
        self.batch_size = config.batch_size
        self.cache_params = {"temperature": config.temperature, "max_new_tokens": config.max_new_tokens, "seed": config.seed}
        self.tokenizer = AutoTokenizer.from_pretrained(
            config.model_name_or_path, revision=config.revision, trust_remote_code=config.trust_remote_code
        )
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every prompt
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        dtype = "auto" if config.dtype == "auto" else getattr(torch, config.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(
            config.model_name_or_path, revision=config.revision, dtype=dtype, trust_remote_code=config.trust_remote_code
        ).to(config.device)
        self.model.eval()

    def _prompt_text(self, request: RewriteRequest) -> str:
        messages = list(request.messages)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        # A base model without a chat template: plain text, system first.
        return "\n\n".join(m["content"] for m in messages) + "\n\n"

    def complete(self, request: RewriteRequest) -> str:
        result = self.complete_batch([request])[0]
        if isinstance(result, RowFailure):
            raise result
        return result

    def complete_batch(self, requests: Sequence[RewriteRequest]) -> list[str | RowFailure]:
        import torch

        texts = [self._prompt_text(r) for r in requests]
        encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.config.device)
        sampling = self.config.temperature > 0
        kwargs = {"max_new_tokens": self.config.max_new_tokens, "do_sample": sampling, "pad_token_id": self.tokenizer.pad_token_id}
        if sampling:
            kwargs["temperature"] = self.config.temperature
        device = torch.device(self.config.device)
        devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):  # seeded without touching the caller's RNG
            torch.manual_seed(self.config.seed)
            output = self.model.generate(**encoded, **kwargs)  # [N, P + new]
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


def build_backend(config: RewriteConfig, api_key: str | None = None, environ: Mapping[str, str] | None = None) -> RewriteBackend:
    """The backend the config names. ``api_key`` is the resolved secret, passed in by the step layer."""
    if config.backend == "openai":
        return OpenAIBackend(config.openai, api_key=api_key, environ=environ)
    if config.backend == "transformers":
        return TransformersBackend(config.transformers)
    return ExtractiveBackend()


# --------------------------------------------------------------------------------------------- the stage


class RewriteCounts(StrictConfig):
    """Where every input row went: input_rows = within_budget + rewritten + fallback_original + dropped."""

    input_rows: int = Field(0, description="Rows in the input table.")
    within_budget: int = Field(0, description="Rows kept unchanged because the trace already fit (or was empty); not sent.")
    rewritten: int = Field(0, description="Rows whose trace was replaced by an accepted rewrite.")
    fallback_original: int = Field(0, description="Failed rewrites that kept the original trace (fallback='keep_original').")
    dropped: int = Field(0, description="Failed rewrites whose row was removed (fallback='drop').")
    failures: dict[str, int] = Field(default_factory=dict, description="Failed rewrites by reason (see FAILURE_REASONS).")
    cache_hits: int = Field(0, description="Rows answered from the persistent cache instead of the teacher.")
    teacher_calls: int = Field(0, description="Distinct prompts sent to the backend in this run (not counting retries).")


@dataclass
class RewriteResult:
    """The rewritten table (canonical schema), the failed rows (quarantine schema: row id, reason, and as
    raw a JSON object with the detail and the teacher's response) and the counts."""

    table: pa.Table
    failures: pa.Table
    counts: RewriteCounts


@dataclass
class _Pending:
    key: str
    request: RewriteRequest
    rows: list[int] = field(default_factory=list)


def count_tokens(tokenizer: Any, texts: Sequence[str], chunk: int = 512) -> list[int]:
    """Token counts of ``texts`` under ``tokenizer`` (no special tokens), tokenised in chunks."""
    counts: list[int] = []
    for start in range(0, len(texts), chunk):
        batch = list(texts[start : start + chunk])
        counts.extend(len(ids) for ids in tokenizer(batch, add_special_tokens=False).input_ids)
    return counts


def clean_response(text: str) -> str:
    """The teacher's answer without a leading ``<think>...</think>`` block (reasoning teachers) and blank edges."""
    return _THINK_BLOCK_RE.sub("", text).strip()


def rewrite_traces(
    table: pa.Table,
    config: RewriteConfig,
    tokenizer: Any,
    backend: RewriteBackend | None = None,
    api_key: str | None = None,
) -> RewriteResult:
    """Condense the ``reasoning`` column of ``table`` to at most ``config.token_budget`` tokens of ``tokenizer``.

    ``backend`` defaults to the one the config names; ``api_key`` is the teacher's key when the step layer
    resolved it from a secret (else the config's environment variable is read). Raises
    TeacherRequestError when the endpoint refuses with a non-retryable 4xx; the cache keeps what came in.
    """
    table = validate_table(table)
    rows = table.to_pylist()
    original_tokens = count_tokens(tokenizer, [r["reasoning"] for r in rows])
    budget = config.token_budget
    to_send = [
        i for i, r in enumerate(rows)
        if r["reasoning"].strip() and not (config.skip_within_budget and original_tokens[i] <= budget)
    ]
    responses: dict[int, str | RowFailure] = {}
    cache_hits = teacher_calls = 0
    backend_name = model_id = None
    if to_send:
        owned = backend is None  # a backend built here is closed here
        backend = build_backend(config, api_key) if owned else backend
        backend_name, model_id = backend.name, backend.model_id
        cache = RewriteCache(Path(config.cache_dir) / CACHE_FILE) if config.cache_dir and backend.cacheable else None
        try:
            pending: dict[str, _Pending] = {}
            for i in to_send:
                r = rows[i]
                request = RewriteRequest(r["question"], r["reasoning"], r["answer"], render_messages(config, r["question"], r["reasoning"], r["answer"]))
                key = cache_key(config, backend, request)
                cached = cache.get(key) if cache is not None else None
                if cached is not None:
                    responses[i] = cached
                    cache_hits += 1
                else:
                    pending.setdefault(key, _Pending(key, request)).rows.append(i)  # identical prompts go once
            teacher_calls = len(pending)
            logger.info(
                "rewrite: %d of %d rows over budget or forced; %d from cache, %d prompt(s) to the %s backend",
                len(to_send), len(rows), cache_hits, teacher_calls, backend.name,
            )
            failed_requests = 0
            for item, result in _run_backend(backend, list(pending.values()), cache, config.show_progress):
                for i in item.rows:
                    responses[i] = result
                failed_requests += isinstance(result, RowFailure) and result.reason == "request_failed"
            if teacher_calls and failed_requests == teacher_calls:
                # Not a bad row but a dead endpoint: falling back for every row would hide it.
                where = getattr(backend, "url", backend.name)
                raise TeacherRequestError(
                    f"the teacher at {where} failed all {teacher_calls} request(s) of this run after retries "
                    f"(timeouts, connection errors or 5xx); {cache_hits} row(s) came from the cache, which is kept"
                )
        finally:
            if cache is not None:
                cache.close()
            if owned and hasattr(backend, "close"):
                backend.close()
    return _assemble(rows, original_tokens, responses, config, tokenizer, backend_name, model_id, cache_hits, teacher_calls)


def _run_backend(backend: RewriteBackend, items: list[_Pending], cache: RewriteCache | None, show_progress: bool):
    """Yield (item, text or RowFailure) as results arrive; each success is cached before it is yielded."""
    if not items:
        return
    # A bar on a terminal, else about ten log lines (igpo.progress); closed without a final line on an error.
    with ProgressReporter(
        len(items), f"rewrite ({backend.name})", mode=as_mode(show_progress), every=every_fraction(len(items)),
        unit="trace", logger=logger,
    ) as progress:
        if backend.batch_size > 1:
            for start in range(0, len(items), backend.batch_size):
                chunk = items[start : start + backend.batch_size]
                results = backend.complete_batch([item.request for item in chunk])
                for item, result in zip(chunk, results):
                    if cache is not None and isinstance(result, str):
                        cache.put(item.key, backend.name, backend.model_id, result)
                    progress.update(1)
                    yield item, result
            return

        stop = threading.Event()  # set by the first fatal error, so no worker sends another request

        def work(item: _Pending) -> str | RowFailure | None:
            if stop.is_set():
                return None
            try:
                text = backend.complete(item.request)
            except RowFailure as failure:
                return failure
            except BaseException:
                stop.set()
                raise
            if cache is not None:
                cache.put(item.key, backend.name, backend.model_id, text)  # before the worker takes the next one
            return text

        executor = ThreadPoolExecutor(max_workers=backend.max_concurrency, thread_name_prefix="rewrite")
        try:
            futures = {executor.submit(work, item): item for item in items}
            for future in as_completed(futures):
                result = future.result()  # a TeacherRequestError propagates here and stops the run
                if result is None:
                    continue  # skipped after a fatal error elsewhere; that error is raised below
                progress.update(1)
                yield futures[future], result
        finally:
            # On an error: drop what has not started; requests in flight finish (and are cached).
            executor.shutdown(wait=True, cancel_futures=True)


def _assemble(
    rows: list[dict],
    original_tokens: list[int],
    responses: Mapping[int, str | RowFailure],
    config: RewriteConfig,
    tokenizer: Any,
    backend_name: str | None,
    model_id: str | None,
    cache_hits: int,
    teacher_calls: int,
) -> RewriteResult:
    """Verify every response (answer kept, budget met) and build the output and failure tables."""
    texts = {i: clean_response(r) for i, r in responses.items() if isinstance(r, str)}
    order = sorted(texts)
    new_tokens = dict(zip(order, count_tokens(tokenizer, [texts[i] for i in order])))
    out_rows, failed_rows = [], []
    counts = {"within_budget": 0, "rewritten": 0, "fallback_original": 0, "dropped": 0}
    failures: dict[str, int] = {}
    for i, row in enumerate(rows):
        metadata = json.loads(row["metadata"])
        metadata["original_reasoning_tokens"] = original_tokens[i]
        if i not in responses:
            counts["within_budget"] += 1
            metadata.update(rewrite_status="within_budget", reasoning_tokens=original_tokens[i])
            out_rows.append({**row, "metadata": json.dumps(metadata, ensure_ascii=False, sort_keys=True)})
            continue
        result = responses[i]
        failure = result if isinstance(result, RowFailure) else _check(texts[i], row["answer"], new_tokens[i], config.token_budget)
        if failure is None:
            counts["rewritten"] += 1
            metadata.update(
                rewrite_status="rewritten", reasoning_tokens=new_tokens[i], rewrite_backend=backend_name, rewrite_model=model_id
            )
            out_rows.append({**row, "reasoning": texts[i], "metadata": json.dumps(metadata, ensure_ascii=False, sort_keys=True)})
            continue
        failures[failure.reason] = failures.get(failure.reason, 0) + 1
        raw = {"detail": failure.detail, "response": texts.get(i), "original_reasoning_tokens": original_tokens[i]}
        failed_rows.append({"source": row["source"], "row": row["id"], "reason": failure.reason, "raw": json.dumps(raw, ensure_ascii=False)})
        if config.fallback == "keep_original":
            counts["fallback_original"] += 1
            metadata.update(rewrite_status="fallback_original", rewrite_failure=failure.reason, reasoning_tokens=original_tokens[i])
            out_rows.append({**row, "metadata": json.dumps(metadata, ensure_ascii=False, sort_keys=True)})
        else:
            counts["dropped"] += 1
    result_counts = RewriteCounts(
        input_rows=len(rows), failures=dict(sorted(failures.items())), cache_hits=cache_hits, teacher_calls=teacher_calls, **counts
    )
    logger.info("rewrite: %s", result_counts.model_dump())
    return RewriteResult(
        table=validate_table(rows_to_table(out_rows)),
        failures=rows_to_table(failed_rows, QUARANTINE_SCHEMA),
        counts=result_counts,
    )


def _check(text: str, answer: str, tokens: int, budget: int) -> RowFailure | None:
    """None when the rewrite states the original answer (igpo.verify) within the budget, else the failure."""
    if not text:
        return RowFailure("empty_response")
    stated = extract_answer(text)
    if stated is None:
        return RowFailure("answer_missing", "the rewrite states no final answer")
    if not answers_match(answer, stated):
        return RowFailure("answer_changed", f"rewrite states {stated[:80]!r}, original answer {answer[:80]!r}")
    if tokens > budget:
        return RowFailure("over_budget", f"{tokens} tokens > budget {budget}")
    return None
