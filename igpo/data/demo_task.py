"""The demo task: seeded chains of single-digit additions and subtractions modulo 10.

Why this task. On this machine a 4-layer, d=64 bidirectional model with a character-level tokenizer
learned chains of single-digit ``+``/``-`` mod 10 with operands in {1, 2, 3} in about 2,000 SFT steps
(about 3 minutes on one core), while two-digit arithmetic with carries did not learn in 5 minutes. So
every step is one digit in, one digit out, and the difficulty knob is the number of steps.

Why the answer is the whole walk. If the answer were the final digit alone, a policy guessing at random
would be right one time in ten, and a group of 8 completions would contain a correct one by luck in
1 - 0.9**8 = 57% of groups; an all-wrong group would then say little about the policy. The answer is
instead the start digit followed by every intermediate result, written as one integer: start 7, then
+3 -2 +1 -3 gives the values 0, 8, 9, 6 and the answer ``\\boxed{70896}``. A random guess of the k
results is right with probability 10**-k (1 in 10,000 at 4 steps), yet the model only has to copy the
last digit of each trace line into the box, which a bidirectional model learns easily. Two facts about
the shared verifier (math-verify) shaped the format: a leading zero is ignored ("0896" equals "896"),
so the answer starts with the start digit, drawn from 1..9 and never 0; and comma-separated lists
compare as sets ("7,0,8" equals "7,8,0"), so the digits are not separated.

Formats (printable ASCII only, so the character tokenizer covers them):

- question: ``Start at 7, then +3 -2 +1 -3 (mod 10). Give each value.``
- concise trace (what SFT should teach; about 40 characters at 4 steps, so prompt + completion stays
  within about 128 characters at difficulty 3-4): one ``a+d=b`` line per step, then ``\\boxed{...}``.
- verbose trace (for the rewrite stage to condense; several times longer, same steps, same answer):
  wordy sentences drawn from a few templates, in which each step's equation is its own clause.
  The offline ``extractive`` rewriter recovers the concise trace from it exactly, which the tests check.

Train and test questions are drawn without replacement from the same finite space (start digit x
operations), so the splits never share a question. Everything is a function of ``DemoTaskConfig.seed``
through a local ``random.Random``.

The hard split (``DemoTaskConfig.split``). IGPO is for prompts on which every sample of a group fails:
GRPO gets no gradient from them, IGPO turns them into signal with partial hints of y*. A task on which SFT
already solves every prompt shows nothing, so the split builds the paper's situation on purpose: SFT sees the
easy rows only (``sft_difficulties``), RL prompts mix easy and hard (``rl_difficulties``), the test table has
both, and every row's metadata says ``num_steps`` and ``difficulty`` ("easy" / "hard").

- ``split="wraps"`` (what ``benchmarks/igpo_effect.py`` uses): every chain has ``num_steps`` operations; an easy
  chain never leaves 0..9 (``5+3=8``), a hard one wraps around modulo 10 at least ``hard_min_wraps`` times
  (``8+3=1``, ``1-2=9``). The SFT model has seen the format, the chain and 42 of the 54 single-step facts,
  but never a wrap, and it answers those by clamping (``8+3=9``, ``1-2=0``): measured on this machine, the
  demo model (2 layers, d = 96) SFT'd on easy 3-step chains samples no correct hard answer in 512 tries
  (64 prompts x G = 8, T = 1), so every hard group is all wrong, while 97% of its easy groups hold a correct
  sample. The missing facts are exactly what y* hints carry: with hints the policy completes 4-7% of its
  inpainting attempts correctly, so IGPO repairs some all-wrong groups where GRPO gets no gradient at all.
  (In the probes behind these settings that signal did not yet move hard accuracy within 80 GRPO steps'
  worth of completions; ``benchmarks/igpo_effect.py`` measures it over seeds.)
- ``split="steps"``: easy chains have ``easy_steps`` operations, hard ones ``hard_steps``; rows are spread
  evenly over the counts, a count never given more rows than it has questions (54 one-step questions
  exist). Kept for completeness, not recommended for this model: SFT'd on 1-2-step chains, it writes garbage
  on a 3-step prompt, hints or not (0 of 128 inpainting attempts correct), since a longer prompt moves every
  position it learnt to attend to.
- ``split="none"`` (the default) is the original single-difficulty task: ``num_steps`` operations
  everywhere, every row labelled "easy", so SFT and RL select every row.
- Train and test are disjoint within every difficulty (each is drawn without replacement from its class).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from igpo.data.config import DemoTaskConfig, spread_over_step_counts
from igpo.data.schema import rows_to_table, validate_table

MODULUS = 10  # fixed: every value must stay one digit for the answer to be a digit string

_INTROS = (
    ("We apply the operations one at a time and keep only the last digit after each one, which is the same as "
     "working modulo 10."),
    ("The plan is simple: go through the operations in order, reduce every intermediate result modulo 10, and "
     "write down each value we reach."),
    ("Let us work through the chain carefully, one operation after another, always keeping the value between "
     "zero and nine by taking it modulo 10."),
)
_STARTS = ("We begin with the value {s}.", "The starting value is {s}.", "At the start the value is {s}.")
_ADD_STEPS = (
    ("Step {i}: add {d} to the current value {a}. Working modulo 10, {a} + {d} = {b}, since {a} plus {d} is "
     "{raw} and its last digit is {b}."),
    ("Next we add {d} to {a}. Reducing modulo 10, {a} + {d} = {b}, because {raw} leaves remainder {b} when "
     "divided by 10."),
    "Now the operation is plus {d}. Taking {a} and adding {d} gives {raw}; reduced modulo 10, {a} + {d} = {b}.",
)
_SUB_STEPS = (
    ("Step {i}: subtract {d} from the current value {a}. Working modulo 10, {a} - {d} = {b}, since {a} minus "
     "{d} is {raw}, which is {b} modulo 10."),
    ("Next we take away {d} from {a}. Reducing modulo 10, {a} - {d} = {b}, because {raw} leaves remainder {b} "
     "when divided by 10."),
    ("Now the operation is minus {d}. Taking {a} and subtracting {d} gives {raw}; reduced modulo 10, "
     "{a} - {d} = {b}."),
)
_CHECKS = (
    "Checking again, the last value {b} is indeed between zero and nine, as it must be.",
    "Every value we wrote down is a single digit, so nothing was missed.",
)
_OUTROS = (
    ("Writing the starting value followed by every result in order gives the digits {spaced}, so the answer "
     "is \\boxed{{{answer}}}."),
    "Putting the start value and all {k} results together in order, the final answer is \\boxed{{{answer}}}.",
)


@dataclass(frozen=True)
class DemoProblem:
    """One chain: ``start`` in 1..9, ``ops`` like ("+3", "-2"), ``values`` the result after each op."""

    start: int
    ops: tuple[str, ...]
    values: tuple[int, ...]

    @property
    def question(self) -> str:
        """The prompt text."""
        return f"Start at {self.start}, then {' '.join(self.ops)} (mod {MODULUS}). Give each value."

    @property
    def answer(self) -> str:
        """The start digit followed by every intermediate value (see the module docstring for why)."""
        return str(self.start) + "".join(str(v) for v in self.values)

    @property
    def concise_trace(self) -> str:
        """One ``a+d=b`` line per step, then the boxed answer."""
        lines, current = [], self.start
        for op, value in zip(self.ops, self.values):
            lines.append(f"{current}{op}={value}")
            current = value
        return "\n".join(lines + [f"\\boxed{{{self.answer}}}"])

    def verbose_trace(self, rng: random.Random) -> str:
        """The same steps in wordy prose; ``rng`` picks the phrasing (never the arithmetic)."""
        sentences = [rng.choice(_INTROS), rng.choice(_STARTS).format(s=self.start)]
        current = self.start
        for i, (op, value) in enumerate(zip(self.ops, self.values), start=1):
            d = int(op[1:])
            raw = current + d if op[0] == "+" else current - d
            template = rng.choice(_ADD_STEPS if op[0] == "+" else _SUB_STEPS)
            sentences.append(template.format(i=i, a=current, d=d, b=value, raw=raw))
            current = value
        sentences.append(rng.choice(_CHECKS).format(b=current))
        spaced = ", ".join(self.answer)
        sentences.append(rng.choice(_OUTROS).format(spaced=spaced, k=len(self.ops), answer=self.answer))
        return "\n".join(sentences)


def make_problem(start: int, ops: tuple[str, ...]) -> DemoProblem:
    """Evaluate a chain: each value is the previous one plus or minus the operand, modulo 10."""
    values, current = [], start
    for op in ops:
        d = int(op[1:])
        current = (current + d if op[0] == "+" else current - d) % MODULUS
        values.append(current)
    return DemoProblem(start=start, ops=tuple(ops), values=tuple(values))


def _decode(index: int, config: DemoTaskConfig, num_steps: int | None = None) -> DemoProblem:
    """The index-th question of the space with ``num_steps`` operations (default ``config.num_steps``), in mixed
    radix: start digit, then one operation per step."""
    choices = [f"{op}{d}" for op in config.operations for d in sorted(config.operands)]
    start = 1 + index % 9
    index //= 9
    ops = []
    for _ in range(config.num_steps if num_steps is None else num_steps):
        ops.append(choices[index % len(choices)])
        index //= len(choices)
    return make_problem(start, tuple(ops))


def question_space_size(config: DemoTaskConfig, num_steps: int | None = None) -> int:
    """Number of distinct questions with ``num_steps`` operations (default ``config.num_steps``):
    9 start digits x (operations x operands)**steps."""
    steps = config.num_steps if num_steps is None else num_steps
    return 9 * (len(config.operands) * len(config.operations)) ** steps


def generate_demo_task(config: DemoTaskConfig) -> tuple[pa.Table, pa.Table]:
    """The (train, test) tables in the canonical schema; the same config gives identical tables.

    Questions are drawn without replacement from each step count's space (so train and test never share
    one); reasoning holds the verbose or concise trace per ``config.reasoning``, metadata always the concise
    one, plus ``num_steps`` and ``difficulty``.
    """
    rng = random.Random(config.seed)
    if config.split == "wraps":
        splits = _draw_by_wraps(config, rng)
    elif config.split == "none":  # single difficulty: the original draw, unchanged
        indices = rng.sample(range(question_space_size(config)), config.num_train + config.num_test)
        chosen = [(config.num_steps, i) for i in indices]
        splits = {"train": [(q, "easy") for q in chosen[: config.num_train]],
                  "test": [(q, "easy") for q in chosen[config.num_train :]]}
    else:
        splits = {"train": [], "test": []}
        for difficulty, (n_train, n_test) in config.row_counts().items():
            steps = config.step_counts()[difficulty]
            counts = spread_over_step_counts(n_train + n_test, [question_space_size(config, k) for k in steps])
            pool = [(k, i) for k, n in zip(steps, counts) for i in rng.sample(range(question_space_size(config, k)), n)]
            rng.shuffle(pool)
            splits["train"] += [(q, difficulty) for q in pool[:n_train]]
            splits["test"] += [(q, difficulty) for q in pool[n_train:]]
        for chunk in splits.values():  # difficulties interleaved: any slice of the table mixes them
            rng.shuffle(chunk)
    tables = []
    for split, chunk in splits.items():
        rows = []
        for (num_steps, index), difficulty in chunk:
            problem = _decode(index, config, num_steps)
            verbose = problem.verbose_trace(rng)
            metadata = {
                "num_steps": num_steps,
                "difficulty": difficulty,
                "start": problem.start,
                "operations": list(problem.ops),
                "values": list(problem.values),
                "concise_trace": problem.concise_trace,
            }
            rows.append(
                {
                    "id": f"demo-{problem.start}{''.join(problem.ops)}",
                    "source": "demo",
                    "split": split,
                    "question": problem.question,
                    "reasoning": verbose if config.reasoning == "verbose" else problem.concise_trace,
                    "answer": problem.answer,
                    "metadata": json.dumps(metadata, sort_keys=True),
                }
            )
        tables.append(validate_table(rows_to_table(rows)))
    return tables[0], tables[1]


def wraps(problem: DemoProblem) -> int:
    """How many steps leave 0..9 before the modulo (8 + 3 = 11 -> 1 wraps around; 5 + 3 = 8 does not)."""
    count, current = 0, problem.start
    for op in problem.ops:
        raw = current + int(op)  # int("-2") == -2
        count += not 0 <= raw < MODULUS
        current = raw % MODULUS
    return count


def _draw_by_wraps(config: DemoTaskConfig, rng: random.Random) -> dict[str, list[tuple[tuple[int, int], str]]]:
    """split='wraps': the whole space classified by wrap-arounds (0: easy, >= hard_min_wraps: hard), each
    difficulty's train and test rows drawn from its class without replacement."""
    classes: dict[str, list[int]] = {"easy": [], "hard": []}
    for index in range(question_space_size(config)):
        count = wraps(_decode(index, config))
        if count == 0:
            classes["easy"].append(index)
        elif count >= config.hard_min_wraps:
            classes["hard"].append(index)
    splits: dict[str, list[tuple[tuple[int, int], str]]] = {"train": [], "test": []}
    for difficulty, (n_train, n_test) in config.row_counts().items():
        if n_train + n_test > len(classes[difficulty]):
            raise ValueError(
                f"{n_train + n_test} {difficulty} questions needed but only {len(classes[difficulty])} distinct ones "
                f"exist with num_steps={config.num_steps}, hard_min_wraps={config.hard_min_wraps}; lower the counts"
            )
        chosen = rng.sample(classes[difficulty], n_train + n_test)
        splits["train"] += [((config.num_steps, i), difficulty) for i in chosen[:n_train]]
        splits["test"] += [((config.num_steps, i), difficulty) for i in chosen[n_train:]]
    for chunk in splits.values():
        rng.shuffle(chunk)
    return splits


def difficulty_of(row: Mapping[str, Any]) -> str:
    """A demo row's difficulty label from its metadata (rows written before the label existed: "easy")."""
    metadata = row["metadata"]
    return (json.loads(metadata) if isinstance(metadata, str) else metadata).get("difficulty", "easy")


def rows_of_difficulty(table: pa.Table, difficulties: Iterable[str]) -> pa.Table:
    """The rows of a demo table whose ``metadata["difficulty"]`` is one of ``difficulties``, in table order.

    The pipeline's selection: SFT takes ``rows_of_difficulty(train, config.sft_difficulties)``, RL
    ``rows_of_difficulty(train, config.rl_difficulties)``; evaluation reports each difficulty of the test table.
    """
    wanted = set(difficulties)
    keep = [i for i, row in enumerate(table.select(["metadata"]).to_pylist()) if difficulty_of(row) in wanted]
    return table.take(pa.array(keep, type=pa.int64()))
