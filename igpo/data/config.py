"""Config models of the data stages (ingest, the demo task, trace rewriting), each defined once here.

Every model is a frozen :class:`~igpo.config_base.StrictConfig`: unknown keys are rejected and invalid
values fail at construction, naming the field, before any file is read or any request is sent.
Secrets never live in a config: the rewrite config only *names* where the teacher's API key comes from
(an environment variable, or a ZenML secret that the step layer resolves and passes in).
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from igpo.config_base import StrictConfig

LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")  # file formats the loaders read (igpo.data.ingest)

# ---------------------------------------------------------------------------------------------- ingest


class DatasetSourceConfig(StrictConfig):
    """Where one dataset comes from: a local file or directory, or a Hugging Face dataset id."""

    path: str = Field(
        description=(
            "Local file (.json, .jsonl, .parquet), a directory of such files, or a Hugging Face dataset id "
            "passed to datasets.load_dataset. A path ending in a known suffix, or one that exists, is local."
        ),
        min_length=1,
    )
    hf_name: str | None = Field(None, description="Dataset configuration name for load_dataset (e.g. 'main' for openai/gsm8k).")
    hf_split: str = Field("train", min_length=1, description="Split for load_dataset; ignored for local paths.")
    revision: str | None = Field(None, description="Hub revision (commit or tag) for load_dataset; pin it for reproducibility.")
    max_rows: int | None = Field(
        None, ge=1, description="Keep at most this many valid rows, in file order (quick runs); None keeps all."
    )

    @field_validator("path")
    @classmethod
    def _local_path_exists(cls, value: str) -> str:
        # A path that can only be local (a data-file suffix, or written as an absolute / ./ ../ path) must exist
        # now, so a typo fails at config time rather than after the earlier steps ran; a hub id passes through.
        looks_local = value.lower().endswith(LOCAL_SUFFIXES) or value.startswith(("/", "./", "../"))
        if looks_local and not Path(value).exists():
            raise ValueError(f"local dataset path {value!r} does not exist (a Hugging Face id has no file suffix)")
        return value


class MetaMathQAConfig(DatasetSourceConfig):
    """MetaMathQA (``MetaMathQA-395K.json``): the RL prompts whose responses are the hint traces y*."""

    types: tuple[str, ...] = Field(
        ("GSM_AnsAug", "MATH_AnsAug"),
        min_length=1,
        description="Values of the 'type' column to keep (the paper keeps the answer-augmented GSM and MATH rows).",
    )


class OpenR1Config(DatasetSourceConfig):
    """OpenR1-Math-220k (Parquet): the SFT source whose long R1 traces the rewrite stage condenses."""

    hf_name: str | None = Field("default", description="Dataset configuration name for load_dataset.")
    require_complete: bool = Field(
        True, description="Only take a generation whose is_reasoning_complete flag is true (a cut-off trace has no answer)."
    )
    accept_llama_judge: bool = Field(
        False,
        description=(
            "Also accept a generation that only the Llama judge marked correct (correctness_llama) when "
            "math-verify did not; the dataset used the judge for about 12% of its rows."
        ),
    )
    reasoning_fallback: Literal["solution", "quarantine"] = Field(
        "solution",
        description="When no generation is verified correct (and complete): use the reference 'solution', or quarantine the row.",
    )
    excluded_answers: tuple[str, ...] = Field(
        ("proof", "notfound"),
        description="Answer values that mean 'no checkable answer' in NuminaMath-1.5 (proof problems); such rows are quarantined.",
    )


class EvalSetConfig(DatasetSourceConfig):
    """An evaluation benchmark (GSM8K, MATH500, AMC); its rows get split='test'."""

    hf_split: str = Field("test", min_length=1, description="Split for load_dataset; ignored for local paths.")


Difficulty = Literal["easy", "hard"]


class DemoTaskConfig(StrictConfig):
    """The synthetic modular-arithmetic chain task (see :mod:`igpo.data.demo_task` for the design).

    Single difficulty (``split="none"``, the default): every question has ``num_steps`` operations and every
    row is labelled ``"easy"``. With a split (``"wraps"`` or ``"steps"``), ``num_train_hard`` of the
    ``num_train`` training rows and ``num_test_hard`` of the ``num_test`` held-out rows are hard, the rest easy;
    ``sft_difficulties`` / ``rl_difficulties`` say which training rows each stage takes
    (:func:`igpo.data.demo_task.rows_of_difficulty` applies them).
    """

    num_train: int = Field(2000, ge=1, description="Training problems (all difficulties together).")
    num_test: int = Field(200, ge=1, description="Held-out problems; no question is shared with train.")
    num_steps: int = Field(
        4, ge=1, le=12, description="Single-difficulty mode: operations per problem (= lines of the trace)."
    )
    split: Literal["none", "wraps", "steps"] = Field(
        "none",
        description=(
            "How questions get a difficulty. 'none': one difficulty, num_steps operations, every row 'easy'. "
            "'wraps': every question has num_steps operations; 'easy' ones never leave 0..9 (no step wraps "
            "around modulo 10), 'hard' ones wrap at least hard_min_wraps times. 'steps': 'easy' questions have "
            "easy_steps operations, 'hard' ones hard_steps."
        ),
    )
    hard_min_wraps: int = Field(1, ge=1, description="split='wraps': wrap-arounds a hard question has at least.")
    easy_steps: tuple[int, ...] | None = Field(
        None,
        min_length=1,
        description=(
            "split='steps': operation counts of 'easy' questions, e.g. [1, 2]; rows are spread evenly over the "
            "counts. Setting it without 'split' selects split='steps'."
        ),
    )
    hard_steps: tuple[int, ...] = Field(
        (3,), min_length=1, description="split='steps': operation counts of 'hard' questions."
    )
    num_train_hard: int = Field(0, ge=0, description="With a split: how many of the num_train rows are hard.")
    num_test_hard: int = Field(0, ge=0, description="With a split: how many of the num_test rows are hard.")
    sft_difficulties: tuple[Difficulty, ...] = Field(
        ("easy",), min_length=1, description="Difficulties of the training rows that SFT takes (paper: the easy part)."
    )
    rl_difficulties: tuple[Difficulty, ...] = Field(
        ("easy", "hard"), min_length=1, description="Difficulties of the training rows that RL takes."
    )
    operands: tuple[int, ...] = Field((1, 2, 3), min_length=1, description="Operand digits (1..9) an operation may use.")
    operations: tuple[Literal["+", "-"], ...] = Field(("+", "-"), min_length=1, description="Operations, mod 10.")
    reasoning: Literal["verbose", "concise"] = Field(
        "verbose",
        description=(
            "Which trace goes in the 'reasoning' column: 'verbose' (for the rewrite stage to condense) or "
            "'concise' (skip rewriting). The concise trace is always in metadata['concise_trace']."
        ),
    )
    seed: int = Field(0, description="Seed of the generator's own random.Random; the same seed gives the same tables.")

    @model_validator(mode="before")
    @classmethod
    def _easy_steps_imply_steps_split(cls, data: object) -> object:
        if isinstance(data, dict) and "split" not in data and data.get("easy_steps") is not None:
            return {**data, "split": "steps"}
        return data

    @field_validator("operands")
    @classmethod
    def _operands_are_digits(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= d <= 9 for d in value) or len(set(value)) != len(value):
            raise ValueError("operands must be distinct digits in 1..9")
        return value

    @field_validator("operations")
    @classmethod
    def _operations_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("operations must be distinct")
        return value

    @field_validator("easy_steps", "hard_steps")
    @classmethod
    def _step_counts(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is not None and (any(not 1 <= k <= 12 for k in value) or len(set(value)) != len(value)):
            raise ValueError("step counts must be distinct integers in 1..12")
        return value

    def step_counts(self) -> dict[str, tuple[int, ...]]:
        """The operation counts of each difficulty present."""
        if self.split == "none":
            return {"easy": (self.num_steps,)}
        if self.split == "wraps":
            return {"easy": (self.num_steps,), "hard": (self.num_steps,)}
        return {"easy": tuple(sorted(self.easy_steps or ())), "hard": tuple(sorted(self.hard_steps))}

    def row_counts(self) -> dict[str, tuple[int, int]]:
        """(train, test) row counts per difficulty."""
        if self.split == "none":
            return {"easy": (self.num_train, self.num_test)}
        return {
            "easy": (self.num_train - self.num_train_hard, self.num_test - self.num_test_hard),
            "hard": (self.num_train_hard, self.num_test_hard),
        }

    @model_validator(mode="after")
    def _enough_distinct_questions(self) -> DemoTaskConfig:
        per_op = len(self.operands) * len(self.operations)
        if self.split != "steps":  # 'wraps' is checked by the generator, which counts the wrapping chains
            space = 9 * per_op**self.num_steps
            if self.num_train + self.num_test > space:
                raise ValueError(
                    f"num_train + num_test = {self.num_train + self.num_test} exceeds the {space} distinct questions "
                    f"with num_steps={self.num_steps}; lower the counts or raise num_steps"
                )
            if self.split == "wraps" and (self.num_train_hard > self.num_train or self.num_test_hard > self.num_test):
                raise ValueError("num_train_hard / num_test_hard cannot exceed num_train / num_test")
            return self
        if self.num_train_hard > self.num_train or self.num_test_hard > self.num_test:
            raise ValueError("num_train_hard / num_test_hard cannot exceed num_train / num_test")
        if self.easy_steps is None:
            raise ValueError("split='steps' needs easy_steps (the operation counts of easy questions)")
        if set(self.easy_steps) & set(self.hard_steps):
            raise ValueError(f"easy_steps {self.easy_steps} and hard_steps {self.hard_steps} overlap")
        for difficulty, (n_train, n_test) in self.row_counts().items():
            spaces = [9 * per_op**steps for steps in self.step_counts()[difficulty]]
            if n_train + n_test > sum(spaces):
                raise ValueError(
                    f"{n_train + n_test} {difficulty} questions needed but only {sum(spaces)} distinct ones have "
                    f"{self.step_counts()[difficulty]} steps; lower the counts or change easy_steps / hard_steps"
                )
        return self


def spread_over_step_counts(n: int, spaces: list[int]) -> list[int]:
    """``n`` rows split as evenly as possible over step counts whose question spaces are ``spaces`` (ascending),
    a count never given more rows than it has questions (the overflow goes to the larger ones)."""
    out, left = [], n
    for i, space in enumerate(spaces):
        share = min(space, left // (len(spaces) - i))
        out.append(share)
        left -= share
    out[-1] += left  # only when the last space is full too; the validator then rejects the config
    return out


class DecontaminationConfig(StrictConfig):
    """Removal of training rows whose question overlaps an evaluation question."""

    enabled: bool = Field(True, description="Run decontamination of the real training sources against the real benchmarks.")
    ngram: int = Field(8, ge=1, description="Word n-gram size of the overlap (questions shorter than n are one n-gram).")
    threshold: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description=(
            "A training question is contaminated when, for some evaluation question, the shared n-grams are at "
            "least this fraction of the smaller question's n-grams."
        ),
    )


class IngestConfig(StrictConfig):
    """Which sources to read; every source is optional but at least one must be set."""

    metamath: MetaMathQAConfig | None = Field(None, description="MetaMathQA (RL prompts with traces).")
    openr1: OpenR1Config | None = Field(None, description="OpenR1-Math-220k (SFT traces to rewrite).")
    gsm8k: EvalSetConfig | None = Field(None, description="GSM8K test set (JSONL: question, answer ending in '#### N').")
    math500: EvalSetConfig | None = Field(None, description="MATH500 (JSONL: problem, solution, answer, subject, level, unique_id).")
    amc: EvalSetConfig | None = Field(None, description="AMC (problem, answer; id and url optional).")
    demo: DemoTaskConfig | None = Field(None, description="The synthetic demo task (train and test splits).")
    decontamination: DecontaminationConfig = Field(
        default_factory=DecontaminationConfig, description="Overlap removal of training rows against the benchmarks."
    )
    reasons_in_error: int = Field(5, ge=1, description="How many quarantine reasons the no-valid-row error quotes.")
    sft_sources: tuple[Literal["openr1", "metamath", "demo"], ...] | None = Field(
        None, description="Training sources whose rows feed SFT (paper: openr1); None = every configured training source."
    )
    rl_sources: tuple[Literal["openr1", "metamath", "demo"], ...] | None = Field(
        None, description="Training sources whose rows feed RL (paper: metamath); None = every configured training source."
    )

    @model_validator(mode="after")
    def _some_source(self) -> IngestConfig:
        if not any((self.metamath, self.openr1, self.gsm8k, self.math500, self.amc, self.demo)):
            raise ValueError("configure at least one source (metamath, openr1, gsm8k, math500, amc or demo)")
        for field in ("sft_sources", "rl_sources"):
            missing = [s for s in getattr(self, field) or () if getattr(self, s) is None]
            if missing:
                raise ValueError(f"{field}: {missing} not configured; configure them or remove them from {field}")
        return self

    def training_sources(self, stage: Literal["sft", "rl"]) -> tuple[str, ...]:
        """The configured training sources that feed ``stage``."""
        chosen = self.sft_sources if stage == "sft" else self.rl_sources
        configured = tuple(s for s in ("openr1", "metamath", "demo") if getattr(self, s) is not None)
        return configured if chosen is None else tuple(chosen)


# --------------------------------------------------------------------------------------------- rewrite

DEFAULT_SYSTEM_PROMPT = "You rewrite long mathematical reasoning into short, complete, correct solutions."

DEFAULT_PROMPT_TEMPLATE = (
    "Rewrite the solution below into a concise solution of the same problem. Keep every calculation needed to "
    "reach the answer and drop repetition, self-checks, abandoned attempts and commentary. Use at most about "
    "{word_budget} words. Do not change the final answer; end with it written as \\boxed{{{answer}}}.\n\n"
    "Problem:\n{question}\n\nSolution:\n{trace}"
)

TEMPLATE_FIELDS = frozenset({"question", "trace", "answer", "token_budget", "word_budget"})
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class OpenAIBackendConfig(StrictConfig):
    """An OpenAI-compatible chat-completions endpoint (vLLM, SGLang, TGI, or a hosted API).

    The key is never stored here: ``api_key_env`` names an environment variable and ``api_key_secret`` a
    ZenML secret that the step resolves and passes to :func:`igpo.data.rewrite.rewrite_traces`.
    """

    # A key pasted into the wrong field must not be echoed back in a validation error.
    model_config = ConfigDict(hide_input_in_errors=True)

    base_url: str = Field("http://127.0.0.1:8000/v1", description="Endpoint root; requests go to {base_url}/chat/completions.")
    model: str = Field("", description="Teacher model name sent in the request (e.g. meta-llama/Llama-4-Maverick-17B-128E-Instruct).")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="NAME of the environment variable holding the API key; None sends no key (local servers)."
    )
    api_key_secret: str | None = Field(
        None, description="Name of a ZenML secret holding the key; resolved by the step layer, never by the core."
    )
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout in seconds (connect, read, write).")
    max_attempts: int = Field(5, ge=1, description="Attempts per request, counting the first (timeouts, 429, 5xx, malformed JSON).")
    backoff_initial_s: float = Field(1.0, ge=0, description="First retry wait; doubles per attempt.")
    backoff_max_s: float = Field(60.0, ge=0, description="Longest wait between attempts (also caps a server's Retry-After).")
    max_concurrency: int = Field(8, ge=1, description="Requests in flight at once (thread pool size).")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature of the teacher (0 = greedy, reproducible).")
    max_tokens: int = Field(2048, ge=1, description="Longest teacher answer, in the teacher's tokens.")
    fail_row_on_status: tuple[int, ...] = Field(
        (),
        description=(
            "4xx statuses (other than 429) that fail only the row instead of stopping the run, e.g. (400, 413) "
            "when some traces exceed the teacher's context. By default every such 4xx stops the run."
        ),
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME_RE.match(value):
            raise ValueError("api_key_env must be the NAME of an environment variable (letters, digits, '_'), not a key")
        return value

    @field_validator("fail_row_on_status")
    @classmethod
    def _client_errors(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 400 <= s < 500 or s == 429 for s in value):
            raise ValueError("fail_row_on_status may only list 4xx statuses other than 429")
        return value

    @model_validator(mode="after")
    def _backoff_order(self) -> OpenAIBackendConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be >= backoff_initial_s")
        return self


class TransformersBackendConfig(StrictConfig):
    """A local causal LM loaded with transformers' AutoModelForCausalLM and prompted via its chat template."""

    model_name_or_path: str = Field("", description="Hugging Face id or local directory of the teacher.")
    revision: str | None = Field(None, description="Hub revision of the teacher.")
    device: str = Field("cpu", description="torch device of the teacher ('cpu', 'cuda', 'cuda:1').")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Weights dtype.")
    batch_size: int = Field(4, ge=1, description="Prompts generated together (left-padded).")
    max_new_tokens: int = Field(1024, ge=1, description="Longest teacher answer, in the teacher's tokens.")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding; > 0 samples under a forked, seeded RNG.")
    seed: int = Field(0, description="Seed of sampling when temperature > 0 (global RNG state is restored afterwards).")
    trust_remote_code: bool = Field(False, description="Passed to from_pretrained; only for teachers you trust.")


class RewriteConfig(StrictConfig):
    """Length alignment of reasoning traces (SPEC section 1, 'Length-aligned SFT')."""

    model_config = ConfigDict(hide_input_in_errors=True)

    backend: Literal["openai", "transformers", "extractive"] = Field(
        "extractive", description="Who condenses: an OpenAI-compatible endpoint, a local causal LM, or the rule-based extractor."
    )
    token_budget: int = Field(
        1024, ge=1, description="Longest accepted trace, in tokens of the TARGET model's tokenizer (not the teacher's)."
    )
    skip_within_budget: bool = Field(True, description="Traces already within the budget are kept as they are, not sent.")
    fallback: Literal["keep_original", "drop"] = Field(
        "keep_original", description="What a failed rewrite becomes: the original trace, or no row at all."
    )
    system_prompt: str = Field(DEFAULT_SYSTEM_PROMPT, description="System message to the teacher ('' sends none).")
    prompt_template: str = Field(
        DEFAULT_PROMPT_TEMPLATE,
        description=(
            "User message; str.format fields: {question}, {trace}, {answer}, {token_budget}, {word_budget} "
            "(about 3/4 of the token budget). Literal braces are doubled. Must contain {trace}."
        ),
    )
    cache_dir: str | None = Field(
        None, description="Directory of the persistent response cache (rewrite_cache.sqlite); None disables caching."
    )
    show_progress: bool = Field(True, description="Show a tqdm progress bar over the rows sent to the teacher.")
    openai: OpenAIBackendConfig = Field(default_factory=OpenAIBackendConfig, description="Settings of the 'openai' backend.")
    transformers: TransformersBackendConfig = Field(
        default_factory=TransformersBackendConfig, description="Settings of the 'transformers' backend."
    )

    @field_validator("prompt_template")
    @classmethod
    def _template_fields(cls, value: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as err:
            raise ValueError(f"prompt_template is not a valid str.format template ({err}); double literal braces") from None
        unknown = fields - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(f"prompt_template uses unknown fields {sorted(unknown)}; allowed: {sorted(TEMPLATE_FIELDS)}")
        if "trace" not in fields:
            raise ValueError("prompt_template must contain {trace}")
        return value

    @model_validator(mode="after")
    def _backend_settings(self) -> RewriteConfig:
        if self.backend == "openai" and not self.openai.model:
            raise ValueError("backend 'openai' needs openai.model (the teacher's name at the endpoint)")
        if self.backend == "transformers" and not self.transformers.model_name_or_path:
            raise ValueError("backend 'transformers' needs transformers.model_name_or_path")
        return self
