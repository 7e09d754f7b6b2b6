"""Ingest of the real datasets (SPEC section 4, step ``ingest``) into the canonical table.

Each source is read in its exact upstream format, from a local file or directory (JSON, JSONL, Parquet,
detected by suffix) or a Hugging Face dataset id through ``datasets.load_dataset``:

- MetaMathQA (``MetaMathQA-395K.json``, a JSON list of {query, response, type, original_question}): the RL
  prompts. Rows of the configured types are kept and deduplicated by query (first occurrence wins);
  reasoning = response (the hint trace y*), answer = the text after the last "The answer is:".
- OpenR1-Math-220k (Parquet: problem, solution, answer, uuid, generations, correctness_math_verify,
  is_reasoning_complete, ...): the SFT traces the rewrite stage condenses. Reasoning = the first
  generation verified correct (and complete), else per config the reference solution or quarantine.
- GSM8K (JSONL: question, answer ending in ``#### N``), MATH500 (JSONL: problem, solution, answer, subject,
  level, unique_id) and AMC (problem, answer; id, url optional): the evaluation sets, split="test".

Nothing is lost silently. A file that is not what its suffix says, or that lacks the format's columns, is
an error naming the file. A bad row (missing or empty field, wrong type, no parseable answer) goes to the
quarantine table with its reason; a source without a single valid row is an error quoting the first
reasons. Training rows whose question overlaps a benchmark question are removed by
:func:`decontaminate` and reported with the overlap that condemned them.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field
from tqdm.auto import tqdm

from igpo.config_base import StrictConfig
from igpo.data.config import (
    LOCAL_SUFFIXES,
    DatasetSourceConfig,
    DecontaminationConfig,
    EvalSetConfig,
    IngestConfig,
    MetaMathQAConfig,
    OpenR1Config,
)
from igpo.data.demo_task import generate_demo_task, rows_of_difficulty
from igpo.data.schema import (
    QUARANTINE_SCHEMA,
    DataFileError,
    concat_tables,
    empty_table,
    raw_json,
    rows_to_table,
    validate_table,
    write_table,
)
from igpo.progress import is_terminal
from igpo.verify import extract_answer

logger = logging.getLogger(__name__)

TRAIN_SOURCES = ("metamath", "openr1")
EVAL_SOURCES = ("gsm8k", "math500", "amc")

_METAMATH_MARKER = "The answer is:"
_NUMBER_RE = re.compile(r"^[-+]?\d+(?:\.\d+)?$")


class RowError(ValueError):
    """A row that cannot be ingested; the message is its quarantine reason."""


class NoValidRowsError(ValueError):
    """A configured source produced no usable row; the message names the source and the first reasons."""


class _Filtered(Exception):
    """A well-formed row the config excludes (e.g. a MetaMathQA type that is not kept); not a quarantine."""


# ------------------------------------------------------------------------------------------ reading files


def is_local_path(path: str) -> bool:
    """A path that exists, or one ending in a supported suffix (so a missing local file is not sent to the hub)."""
    return Path(path).exists() or path.lower().endswith(LOCAL_SUFFIXES)


def _data_files(path: Path) -> list[Path]:
    if not path.exists():
        raise DataFileError(f"{path}: no such file or directory")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES)
        if not files:
            raise DataFileError(f"{path}: directory holds no {', '.join(LOCAL_SUFFIXES)} file")
        if len({p.suffix.lower() for p in files}) > 1:
            raise DataFileError(f"{path}: directory mixes file formats {sorted({p.suffix for p in files})}")
        return files
    if path.suffix.lower() not in LOCAL_SUFFIXES:
        raise DataFileError(f"{path}: unsupported suffix {path.suffix!r}; expected one of {', '.join(LOCAL_SUFFIXES)}")
    return [path]


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataFileError(f"{path}: not UTF-8 text (byte {err.start}); is it a binary file?") from None
    if "\x00" in text:
        raise DataFileError(f"{path}: contains NUL bytes; is it a binary file?")
    return text


def _iter_json(path: Path) -> Iterator[Any]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # one object per line under a .json name: read it as JSONL
            yield from _iter_jsonl(path)
            return
        raise DataFileError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); truncated download?"
        ) from None
    if not isinstance(data, list):
        raise DataFileError(f"{path}: expected a JSON list of row objects, found a JSON {type(data).__name__}")
    yield from data


def _iter_jsonl(path: Path) -> Iterator[Any]:
    lines = [(n, line) for n, line in enumerate(_read_text(path).splitlines(), start=1) if line.strip()]
    parsed_any = False
    for lineno, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            # A bad line is a bad row (quarantined); a file without a single good line is not JSONL at all.
            row = _BadLine(f"line {lineno} is not valid JSON ({err.msg})", line)
        else:
            parsed_any = True
        yield row
    if lines and not parsed_any:
        raise DataFileError(f"{path}: no line is valid JSON; not a JSONL file")


@dataclass(frozen=True)
class _BadLine:
    reason: str
    text: str


def _iter_parquet(path: Path, columns: list[str]) -> Iterator[dict]:
    try:
        parquet = pq.ParquetFile(path)
        present = [c for c in columns if c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(columns=present, batch_size=1024):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFileError(f"{path}: not a readable Parquet file ({message})") from None


def _parquet_columns(path: Path) -> list[str]:
    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except (pa.ArrowException, OSError) as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataFileError(f"{path}: not a readable Parquet file ({message})") from None


def _require_columns(where: str, found: set[str], required: tuple[str, ...], source: str) -> None:
    missing = [c for c in required if c not in found]
    if missing:
        raise DataFileError(
            f"{where}: lacks column(s) {missing} of the {source} format (found {sorted(found)[:20]}); wrong file?"
        )


def iter_source_rows(config: DatasetSourceConfig, source: str, required: tuple[str, ...], columns: list[str]) -> Iterator[Any]:
    """Raw rows of a source, in file order: local files by suffix, else ``datasets.load_dataset``.

    Checks the format's required columns once per file before yielding, so a file of another dataset is
    one clear error rather than thousands of quarantined rows. ``columns`` bounds what Parquet reads.
    """
    if is_local_path(config.path):
        for path in _data_files(Path(config.path)):
            suffix = path.suffix.lower()
            if suffix == ".parquet":
                _require_columns(str(path), set(_parquet_columns(path)), required, source)
                yield from _iter_parquet(path, columns)
                continue
            rows = list(_iter_json(path) if suffix == ".json" else _iter_jsonl(path))
            keys = set().union(*(r.keys() for r in rows if isinstance(r, dict))) if rows else set()
            if rows:
                _require_columns(str(path), keys, required, source)
            yield from rows
        return
    yield from _iter_hub(config, source, required, columns)


def _iter_hub(config: DatasetSourceConfig, source: str, required: tuple[str, ...], columns: list[str]) -> Iterator[dict]:
    import datasets  # deferred: a heavy import that local-only runs do not need

    where = f"hub dataset {config.path!r} (name={config.hf_name!r}, split={config.hf_split!r})"
    try:
        dataset = datasets.load_dataset(config.path, name=config.hf_name, split=config.hf_split, revision=config.revision)
    except Exception as err:  # the hub raises many types; all mean the same thing here
        raise DataFileError(f"{where}: cannot be loaded ({type(err).__name__}: {err})") from err
    _require_columns(where, set(dataset.column_names), required, source)
    yield from dataset.select_columns([c for c in columns if c in dataset.column_names])


# ------------------------------------------------------------------------------------------ row parsers


def _text(raw: Mapping[str, Any], name: str) -> str:
    if name not in raw or raw[name] is None:
        raise RowError(f"missing field {name!r}")
    value = raw[name]
    if not isinstance(value, str):
        raise RowError(f"field {name!r} is {type(value).__name__}, expected str")
    if not value.strip():
        raise RowError(f"empty field {name!r}")
    return value.strip()


def _optional_text(raw: Mapping[str, Any], name: str) -> str:
    value = raw.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"field {name!r} is {type(value).__name__}, expected str")
    return value.strip()


def _answer(raw: Mapping[str, Any], name: str) -> str:
    """An answer field as text; numbers are accepted (AMC's hub copy stores floats such as 142.0)."""
    if name not in raw or raw[name] is None:
        raise RowError(f"missing field {name!r}")
    value = raw[name]
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(f"field {name!r} is {type(value).__name__}, expected str or number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RowError(f"field {name!r} is {value}, not a finite number")
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text:
        raise RowError(f"empty field {name!r}")
    return text


def _extras(raw: Mapping[str, Any], consumed: set[str]) -> dict[str, Any]:
    """Source fields the canonical columns do not hold, kept in metadata (JSON-safe values only)."""
    extras = {}
    for key, value in raw.items():
        if key in consumed:
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        extras[key] = value
    return extras


def _upstream_id(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(f"field {name!r} is {type(value).__name__}, expected str or int")
    return str(value).strip()


def _canonical(source: str, split: str, row_id: str, question: str, reasoning: str, answer: str, metadata: dict) -> dict:
    return {
        "id": row_id,
        "source": source,
        "split": split,
        "question": question,
        "reasoning": reasoning,
        "answer": answer,
        "metadata": json.dumps(metadata, ensure_ascii=False, sort_keys=True),
    }


def parse_metamath_row(raw: Mapping[str, Any], index: int, config: MetaMathQAConfig) -> dict:
    """One MetaMathQA row; raises _Filtered for types not kept, RowError for bad rows."""
    row_type = _text(raw, "type")
    if row_type not in config.types:
        raise _Filtered(row_type)
    query, response = _text(raw, "query"), _text(raw, "response")
    if _METAMATH_MARKER not in response:
        raise RowError(f"response has no {_METAMATH_MARKER!r}")
    answer = response.rsplit(_METAMATH_MARKER, 1)[1].strip()
    if not answer:
        raise RowError(f"nothing after {_METAMATH_MARKER!r} in the response")
    metadata = {"type": row_type, "original_question": _optional_text(raw, "original_question")}
    return _canonical("metamath", "train", f"metamath-{index}", query, response, answer, metadata)


def _flags(raw: Mapping[str, Any], name: str, length: int) -> list[bool | None]:
    value = raw.get(name)
    if value is None:
        return [None] * length
    if not isinstance(value, list):
        raise RowError(f"field {name!r} is {type(value).__name__}, expected a list")
    if len(value) != length:
        raise RowError(f"field {name!r} has {len(value)} items but generations has {length}")
    if any(v is not None and not isinstance(v, bool) for v in value):
        raise RowError(f"field {name!r} holds non-boolean values")
    return value


def parse_openr1_row(raw: Mapping[str, Any], index: int, config: OpenR1Config) -> dict:
    """One OpenR1-Math row: the first generation verified correct (and complete) is the trace."""
    problem, answer = _text(raw, "problem"), _answer(raw, "answer")
    if answer.lower() in {a.lower() for a in config.excluded_answers}:
        raise RowError(f"answer {answer!r} is not checkable (excluded_answers)")
    generations = raw.get("generations")
    if generations is None:
        generations = []
    if not isinstance(generations, list) or any(g is not None and not isinstance(g, str) for g in generations):
        raise RowError("field 'generations' is not a list of strings")
    verified = _flags(raw, "correctness_math_verify", len(generations))
    judged = _flags(raw, "correctness_llama", len(generations))
    complete = _flags(raw, "is_reasoning_complete", len(generations))
    chosen = None
    for i, generation in enumerate(generations):
        correct = verified[i] is True or (config.accept_llama_judge and judged[i] is True)
        finished = complete[i] is True or not config.require_complete
        if correct and finished and generation and generation.strip():
            chosen = i
            break
    solution = _optional_text(raw, "solution")
    if chosen is not None:
        reasoning, reasoning_from = generations[chosen].strip(), f"generations[{chosen}]"
    elif config.reasoning_fallback == "solution" and solution:
        reasoning, reasoning_from = solution, "solution"
    elif config.reasoning_fallback == "solution":
        raise RowError("no generation verified correct and complete, and no solution to fall back on")
    else:
        raise RowError("no generation verified correct and complete")
    uuid = _upstream_id(raw, "uuid")
    metadata = {
        "uuid": uuid,
        "problem_type": raw.get("problem_type"),
        "question_type": raw.get("question_type"),
        "upstream_source": raw.get("source"),
        "reasoning_from": reasoning_from,
        "num_generations": len(generations),
    }
    row_id = f"openr1-{uuid}" if uuid else f"openr1-{index}"
    return _canonical("openr1", "train", row_id, problem, reasoning, answer, metadata)


def parse_gsm8k_row(raw: Mapping[str, Any], index: int, config: EvalSetConfig) -> dict:
    """One GSM8K row: answer = the number after ``####`` with thousands separators removed."""
    question, full = _text(raw, "question"), _text(raw, "answer")
    if "####" not in full:
        raise RowError("answer has no '#### N' line")
    final = extract_answer(full)  # the shared parser reads the '#### N' line
    number = (final or "").replace(",", "").strip()
    if not _NUMBER_RE.match(number):
        raise RowError(f"answer after '####' is not a number: {(final or '')[:40]!r}")
    reasoning = full.rsplit("####", 1)[0].strip()
    return _canonical("gsm8k", "test", f"gsm8k-{index}", question, reasoning, number, _extras(raw, {"question", "answer"}))


def parse_math500_row(raw: Mapping[str, Any], index: int, config: EvalSetConfig) -> dict:
    """One MATH500 row (the reference solution is kept as reasoning)."""
    problem, answer = _text(raw, "problem"), _answer(raw, "answer")
    uid = _upstream_id(raw, "unique_id")
    metadata = _extras(raw, {"problem", "answer", "solution"})
    row_id = f"math500-{uid}" if uid else f"math500-{index}"
    return _canonical("math500", "test", row_id, problem, _optional_text(raw, "solution"), answer, metadata)


def parse_amc_row(raw: Mapping[str, Any], index: int, config: EvalSetConfig) -> dict:
    """One AMC row (problem, answer; id and url optional, any other field goes to metadata)."""
    problem, answer = _text(raw, "problem"), _answer(raw, "answer")
    uid = _upstream_id(raw, "id")
    metadata = _extras(raw, {"problem", "answer", "solution"})
    row_id = f"amc-{uid}" if uid else f"amc-{index}"
    return _canonical("amc", "test", row_id, problem, _optional_text(raw, "solution"), answer, metadata)


@dataclass(frozen=True)
class SourceSpec:
    """How one upstream format is read: its required and optional columns and its row parser."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    parse: Callable[[Mapping[str, Any], int, Any], dict]
    dedup_by_question: bool = False


SOURCES: dict[str, SourceSpec] = {
    "metamath": SourceSpec("metamath", ("query", "response", "type"), ("original_question",), parse_metamath_row, True),
    "openr1": SourceSpec(
        "openr1",
        ("problem", "answer", "generations", "correctness_math_verify", "is_reasoning_complete"),
        ("solution", "uuid", "correctness_llama", "problem_type", "question_type", "source"),
        parse_openr1_row,
    ),
    "gsm8k": SourceSpec("gsm8k", ("question", "answer"), (), parse_gsm8k_row),
    "math500": SourceSpec("math500", ("problem", "answer"), ("solution", "subject", "level", "unique_id"), parse_math500_row),
    "amc": SourceSpec("amc", ("problem", "answer"), ("id", "url", "solution", "year"), parse_amc_row),
}


# ------------------------------------------------------------------------------------------ one source


class SourceCounts(StrictConfig):
    """What happened to the rows of one source; rows_read = valid + quarantined + filtered + duplicates."""

    rows_read: int = Field(0, description="Rows read from the source (up to max_rows valid ones).")
    valid: int = Field(0, description="Rows that parsed into the canonical schema (after filtering and deduplication).")
    quarantined: int = Field(0, description="Bad rows sent to the quarantine table.")
    filtered: int = Field(0, description="Well-formed rows the config excludes (MetaMathQA types not kept).")
    duplicates: int = Field(0, description="Rows dropped as duplicates of an earlier question (MetaMathQA: by query).")
    decontaminated: int = Field(0, description="Valid training rows removed for overlapping a benchmark question.")
    kept: int = Field(0, description="Rows in the output table: valid - decontaminated.")


@dataclass
class SourceTable:
    """One source's canonical table, its quarantined rows and its counts."""

    table: pa.Table
    quarantine: list[dict]
    counts: SourceCounts


def load_source(name: str, config: DatasetSourceConfig, reasons_in_error: int = 5) -> SourceTable:
    """Read and validate one source. Raises NoValidRowsError when not a single row survives."""
    spec = SOURCES[name]
    rows, quarantine, seen_questions, seen_ids = [], [], set(), set()
    read = filtered = duplicates = 0
    columns = list(spec.required + spec.optional)
    progress = tqdm(iter_source_rows(config, name, spec.required, columns), desc=f"ingest {name}", unit=" rows",
                    disable=not is_terminal(sys.stderr))  # a bar only on a real terminal (igpo.progress)
    for index, raw in enumerate(progress):
        read += 1
        try:
            if isinstance(raw, _BadLine):
                raise RowError(raw.reason)
            if not isinstance(raw, dict):
                raise RowError(f"row is a JSON {type(raw).__name__}, expected an object")
            row = spec.parse(raw, index, config)
        except _Filtered:
            filtered += 1
            continue
        except RowError as err:
            payload = raw.text if isinstance(raw, _BadLine) else raw
            row_name = _upstream_label(raw, index)
            quarantine.append({"source": name, "row": row_name, "reason": str(err), "raw": raw_json(payload)})
            continue
        if spec.dedup_by_question:
            if row["question"] in seen_questions:
                duplicates += 1
                continue
            seen_questions.add(row["question"])
        if row["id"] in seen_ids:
            quarantine.append({"source": name, "row": row["id"], "reason": f"duplicate id {row['id']!r}", "raw": raw_json(raw)})
            continue
        seen_ids.add(row["id"])
        rows.append(row)
        if config.max_rows is not None and len(rows) >= config.max_rows:
            break
    progress.close()
    counts = SourceCounts(
        rows_read=read, valid=len(rows), quarantined=len(quarantine), filtered=filtered, duplicates=duplicates, kept=len(rows)
    )
    logger.info(
        "ingest %s: %d read, %d valid, %d quarantined, %d filtered, %d duplicates",
        name, read, len(rows), len(quarantine), filtered, duplicates,
    )
    if not rows:
        reasons = "; ".join(f"row {q['row']}: {q['reason']}" for q in quarantine[:reasons_in_error]) or "none"
        detail = f"{read} row(s) read, {filtered} filtered by the config, {len(quarantine)} quarantined"
        if name == "metamath" and filtered and not quarantine:
            detail += f" (no row has a type in {list(config.types)})"
        raise NoValidRowsError(f"source {name!r} ({config.path}) has no valid row: {detail}; first reasons: {reasons}")
    return SourceTable(validate_table(rows_to_table(rows)), quarantine, counts)


def _upstream_label(raw: Any, index: int) -> str:
    if isinstance(raw, dict):
        for key in ("uuid", "unique_id", "id"):
            value = raw.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
                return f"{index} ({key}={value})"
    return str(index)


# ------------------------------------------------------------------------------------------ decontamination

_WORD_RE = re.compile(r"[a-z0-9]+|[+\-*/=^<>]")


def normalise_words(text: str) -> list[str]:
    """Lower-cased words and numbers of ``text`` (NFKC), with the arithmetic symbols kept as words so that
    "3 + 2" and "3 - 2" differ while punctuation, spacing and LaTeX braces do not matter."""
    return _WORD_RE.findall(unicodedata.normalize("NFKC", text).lower())


def word_ngrams(text: str, n: int) -> set[str]:
    """Set of word n-grams; a question shorter than n words is one n-gram (so it can still match exactly)."""
    words = normalise_words(text)
    if not words:
        return set()
    if len(words) < n:
        return {" ".join(words)}
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


class NgramIndex:
    """Inverted index n-gram -> benchmark questions, so each training question costs O(its n-grams)
    instead of a pass over every benchmark question."""

    def __init__(self, eval_tables: Mapping[str, pa.Table], n: int):
        self.n = n
        self.labels: list[str] = []
        self.sizes: list[int] = []
        self.postings: dict[str, list[int]] = {}
        for name, table in eval_tables.items():
            for row_id, question in zip(table.column("id").to_pylist(), table.column("question").to_pylist()):
                grams = word_ngrams(question, n)
                if not grams:
                    continue
                doc = len(self.labels)
                self.labels.append(f"{name}/{row_id}")
                self.sizes.append(len(grams))
                for gram in grams:
                    self.postings.setdefault(gram, []).append(doc)

    def best_overlap(self, question: str) -> tuple[float, str | None, int, int]:
        """(overlap, benchmark row, shared n-grams, n-grams of the smaller question) of the closest match."""
        grams = word_ngrams(question, self.n)
        hits: Counter[int] = Counter()
        for gram in grams:
            hits.update(self.postings.get(gram, ()))
        best = (0.0, None, 0, 0)
        for doc, shared in hits.items():
            smaller = min(len(grams), self.sizes[doc])
            overlap = shared / smaller
            if overlap > best[0]:
                best = (overlap, self.labels[doc], shared, smaller)
        return best


def decontaminate(
    train: pa.Table, eval_tables: Mapping[str, pa.Table], config: DecontaminationConfig
) -> tuple[pa.Table, pa.Table]:
    """Split ``train`` into (kept rows, removed rows as a quarantine-schema table with the overlap as reason).

    A training question is removed when some benchmark question shares at least ``threshold`` of the
    smaller question's word n-grams with it (containment, so a benchmark question embedded in a longer
    augmented question is caught).
    """
    index = NgramIndex(eval_tables, config.ngram)
    keep, removed = [], []
    questions, ids, sources = (train.column(c).to_pylist() for c in ("question", "id", "source"))
    rows_bar = tqdm(questions, desc="decontaminate", unit=" rows", disable=not is_terminal(sys.stderr))
    for i, question in enumerate(rows_bar):
        overlap, label, shared, smaller = index.best_overlap(question)
        if label is not None and overlap >= config.threshold:
            reason = f"contaminated: shares {shared} of {smaller} {config.ngram}-grams ({overlap:.2f}) with {label}"
            removed.append({"source": sources[i], "row": ids[i], "reason": reason, "raw": raw_json(train.slice(i, 1).to_pylist()[0])})
        else:
            keep.append(i)
    return train.take(pa.array(keep, type=pa.int64())), rows_to_table(removed, QUARANTINE_SCHEMA)


# ------------------------------------------------------------------------------------------ entry point


class IngestCounts(StrictConfig):
    """Per-source counts of an ingest run (also logged)."""

    sources: dict[str, SourceCounts] = Field(default_factory=dict, description="Counts keyed by source name.")

    @property
    def total_quarantined(self) -> int:
        """Rows quarantined over all sources."""
        return sum(c.quarantined for c in self.sources.values())

    @property
    def total_decontaminated(self) -> int:
        """Training rows removed by decontamination over all sources."""
        return sum(c.decontaminated for c in self.sources.values())


@dataclass
class IngestResult:
    """Output of :func:`ingest`. Tables share the canonical schema (quarantine and decontaminated rows the
    quarantine schema); ``train`` and ``eval`` are keyed by source, since SFT, RL and evaluation each use
    different sources. :func:`~igpo.data.schema.concat_tables` joins them when one table is wanted."""

    train: dict[str, pa.Table] = field(default_factory=dict)
    eval: dict[str, pa.Table] = field(default_factory=dict)
    quarantine: pa.Table = field(default_factory=lambda: empty_table(QUARANTINE_SCHEMA))
    decontaminated: pa.Table = field(default_factory=lambda: empty_table(QUARANTINE_SCHEMA))
    counts: IngestCounts = field(default_factory=IngestCounts)


def ingest(config: IngestConfig) -> IngestResult:
    """Read every configured source, quarantine bad rows, decontaminate training rows against the benchmarks."""
    train, evals, quarantine, counts = {}, {}, [], {}
    for name in TRAIN_SOURCES + EVAL_SOURCES:
        source_config = getattr(config, name)
        if source_config is None:
            continue
        loaded = load_source(name, source_config, config.reasons_in_error)
        (train if name in TRAIN_SOURCES else evals)[name] = loaded.table
        quarantine.extend(loaded.quarantine)
        counts[name] = loaded.counts
    if config.demo is not None:
        # The demo is exempt from n-gram decontamination: its questions are templated near-duplicates of
        # each other by design, and its splits are disjoint by exact question at generation time.
        demo_train, demo_test = generate_demo_task(config.demo)
        train["demo"], evals["demo"] = demo_train, demo_test
        n = demo_train.num_rows + demo_test.num_rows
        counts["demo"] = SourceCounts(rows_read=n, valid=n, kept=n)
    removed_tables = []
    real_evals = {k: v for k, v in evals.items() if k in EVAL_SOURCES}
    if config.decontamination.enabled and real_evals:
        for name in [s for s in TRAIN_SOURCES if s in train]:
            kept, removed = decontaminate(train[name], real_evals, config.decontamination)
            train[name] = kept
            removed_tables.append(removed)
            counts[name] = counts[name].model_copy(update={"decontaminated": removed.num_rows, "kept": kept.num_rows})
            logger.info("decontaminate %s: removed %d of %d rows", name, removed.num_rows, removed.num_rows + kept.num_rows)
            if kept.num_rows == 0:
                raise NoValidRowsError(f"source {name!r}: every row overlaps a benchmark question; check the decontamination threshold")
    return IngestResult(
        train=train,
        eval=evals,
        quarantine=rows_to_table(quarantine, QUARANTINE_SCHEMA),
        decontaminated=concat_tables(removed_tables, QUARANTINE_SCHEMA),
        counts=IngestCounts(sources=counts),
    )


def training_table(result: IngestResult, config: IngestConfig, stage: Literal["sft", "rl"]) -> pa.Table:
    """The rows ``stage`` trains on: its configured sources joined, the demo's rows restricted to the stage's
    difficulties (``DemoTaskConfig.sft_difficulties`` / ``rl_difficulties``: SFT on the easy part, RL on both)."""
    tables = []
    for name in config.training_sources(stage):
        table = result.train[name]
        if name == "demo" and config.demo is not None:
            wanted = config.demo.sft_difficulties if stage == "sft" else config.demo.rl_difficulties
            table = rows_of_difficulty(table, wanted)
        tables.append(table)
    return concat_tables(tables)


def write_ingest_result(result: IngestResult, output_dir: str | Path) -> dict[str, Path]:
    """Write every table as Parquet (train_<source>, eval_<source>, quarantine, decontaminated) and the
    counts as JSON; returns the paths by name."""
    output_dir = Path(output_dir)
    paths = {}
    for prefix, tables in (("train", result.train), ("eval", result.eval)):
        for name, table in tables.items():
            paths[f"{prefix}_{name}"] = write_table(table, output_dir / f"{prefix}_{name}.parquet")
    paths["quarantine"] = write_table(result.quarantine, output_dir / "quarantine.parquet", QUARANTINE_SCHEMA)
    paths["decontaminated"] = write_table(result.decontaminated, output_dir / "decontaminated.parquet", QUARANTINE_SCHEMA)
    paths["counts"] = output_dir / "counts.json"
    paths["counts"].write_text(result.counts.model_dump_json(indent=2))
    return paths
