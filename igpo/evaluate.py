"""Benchmark evaluation: pass@1 with greedy decoding, avg@k with k samples, through the shared verifier.

SPEC section 2 / issue 5: GSM8K pass@1 (greedy), MATH500 pass@1, AMC avg@16 at temperature 0.1, block 32,
generation length configurable (128 / 256 / 512). Every score comes from ``igpo.verify.is_correct``, the
function the RL reward calls, so training and evaluation can never disagree on what "correct" means.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import pandas as pd
import torch
from pydantic import Field, model_validator

from igpo.config_base import StrictConfig
from igpo.models import DiffusionLM
from igpo.progress import ProgressMode, ProgressReporter, as_mode, every_fraction
from igpo.prompting import decode_completions, encode_prompts
from igpo.sampler import SamplerConfig, generate
from igpo.verify import extract_answer, is_correct

log = logging.getLogger(__name__)


class BenchmarkConfig(StrictConfig):
    """How one benchmark is scored."""

    name: str = Field(min_length=1, description="Benchmark name; must match a table handed to evaluate_model.")
    samples: int = Field(1, ge=1, description="Completions per question: 1 gives pass@1, k > 1 gives avg@k.")
    sampler: SamplerConfig = Field(
        default_factory=lambda: SamplerConfig(gen_length=256, block_length=32, steps=128, temperature=0.0),
        description="Generation settings; temperature 0 is greedy.",
    )
    limit: int | None = Field(None, ge=1, description="Score only the first N questions (quick runs); None = all.")
    subsets_by: str | None = Field(
        None,
        min_length=1,
        description="Also score the questions of each value of this key of the rows' metadata JSON separately, as "
        "benchmark '<name>/<value>' (the demo task's 'difficulty': easy and hard). Every row must have the key.",
    )

    @model_validator(mode="after")
    def _greedy_needs_one_sample(self) -> BenchmarkConfig:
        if self.sampler.temperature == 0 and self.samples > 1:
            raise ValueError(f"benchmark {self.name}: samples={self.samples} with temperature 0 repeats one greedy answer")
        return self

    @property
    def metric(self) -> str:
        return "pass@1" if self.samples == 1 else f"avg@{self.samples}"


class EvalConfig(StrictConfig):
    """Evaluation of one or more benchmarks."""

    benchmarks: tuple[BenchmarkConfig, ...] = Field(min_length=1, description="Benchmarks to score.")
    batch_size: int = Field(64, ge=1, description="Sequences generated together.")
    instruction: str = Field("", description="Text put before each question in the prompt (same as in training).")
    seed: int = Field(0, description="Seed of the sampling generator (temperature > 0).")


def evaluate_model(
    model: DiffusionLM, tables: dict[str, pd.DataFrame], config: EvalConfig, model_name: str,
    progress: bool | ProgressMode = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score ``model`` on each configured benchmark.

    tables: benchmark name -> canonical table (columns ``question``, ``answer``; ``id`` if present).
    Returns (scores: one row per benchmark with model, benchmark, metric, score, n_questions, n_samples,
    seconds; samples: one row per completion with prompt, completion, extracted answer, gold, correct).
    ``progress``: True = ``auto`` (a bar on a terminal, else about ten log lines per benchmark), False = off,
    or a mode of ``igpo.progress``.
    """
    model.model.eval()
    generator = torch.Generator(device=model.device).manual_seed(config.seed)
    score_rows, sample_rows = [], []
    for bench in config.benchmarks:
        if bench.name not in tables:
            raise KeyError(f"no table for benchmark {bench.name!r}; have {sorted(tables)}")
        table = tables[bench.name].head(bench.limit) if bench.limit else tables[bench.name]
        questions = table["question"].tolist() * bench.samples
        golds = table["answer"].astype(str).tolist() * bench.samples
        ids = (table["id"].astype(str).tolist() if "id" in table else [str(i) for i in range(len(table))]) * bench.samples
        start = time.perf_counter()
        completions = _generate_all(model, questions, bench.sampler, config, generator, progress, bench.name)
        correct = [is_correct(c, g) for c, g in zip(completions, golds)]
        seconds = time.perf_counter() - start
        for k, (qid, q, c, g, ok) in enumerate(zip(ids, questions, completions, golds, correct)):
            sample_rows.append({
                "model": model_name, "benchmark": bench.name, "id": qid, "sample": k // max(len(table), 1),
                "prompt": q, "completion": c, "extracted_answer": extract_answer(c), "gold": g, "correct": ok,
            })
        for name, chosen in _subsets(bench, table):
            kept = [ok for ok, keep in zip(correct, chosen * bench.samples) if keep]
            score = sum(kept) / max(len(kept), 1)
            score_rows.append({
                "model": model_name, "benchmark": name, "metric": bench.metric, "score": score,
                "n_questions": sum(chosen), "n_samples": bench.samples, "seconds": seconds,
            })
            log.info("%s on %s: %s = %.3f (%d questions)", model_name, name, bench.metric, score, sum(chosen))
    return pd.DataFrame(score_rows), pd.DataFrame(sample_rows)


def _subsets(bench: BenchmarkConfig, table: pd.DataFrame) -> list[tuple[str, list[bool]]]:
    """(benchmark name, which questions) of the whole table, then of each ``subsets_by`` value in sorted order."""
    everything = [(bench.name, [True] * len(table))]
    if bench.subsets_by is None:
        return everything
    key = bench.subsets_by
    values = []
    for index, raw in enumerate(table["metadata"] if "metadata" in table else [None] * len(table)):
        metadata = json.loads(raw) if isinstance(raw, str) and raw else {}
        if key not in metadata:
            raise ValueError(f"benchmark {bench.name}: subsets_by={key!r} but row {index} has no metadata key {key!r}")
        values.append(str(metadata[key]))
    return everything + [(f"{bench.name}/{v}", [x == v for x in values]) for v in sorted(set(values))]


def _generate_all(
    model: DiffusionLM,
    questions: Sequence[str],
    sampler: SamplerConfig,
    config: EvalConfig,
    generator: torch.Generator,
    progress: bool | ProgressMode,
    name: str,
) -> list[str]:
    completions: list[str] = []
    with ProgressReporter(
        len(questions), f"eval {name}", mode=as_mode(progress), every=every_fraction(len(questions)), unit="prompt",
        logger=log,
    ) as reporter:
        for start in range(0, len(questions), config.batch_size):
            batch = questions[start : start + config.batch_size]
            ids, mask = encode_prompts(model.tokenizer, batch, model.tokens.pad_id, config.instruction, model.device)
            out = generate(model, ids, sampler, generator, prompt_mask=mask)
            completions += decode_completions(model.tokenizer, out, model.tokens.stop_ids)
            reporter.update(len(batch))
    return completions
