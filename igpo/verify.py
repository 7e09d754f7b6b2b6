"""The one answer verifier shared by the RL reward, the rewriting check and the benchmark score.

SPEC section 2 (Rewards): the answer is the *last* ``\\boxed{}`` of a completion (the reference code took
the first one in training and the last one in evaluation; SPEC section 3), or, where a completion has
no box, the GSM8K ``#### N`` form, MetaMathQA's "The answer is: X", or an ``<answer>`` tag.
Equivalence is decided by math-verify, not by string comparison, with three rules of the project's own:

- ``\\$`` is a currency sign, not a math delimiter (``\\$18.90`` is 18.90; MATH500 and GSM8K-style money);
- two plain numbers are compared exactly when both are integers and otherwise with a relative tolerance
  (``REL_TOL``), not math-verify's rounding to six decimals, which accepts .0000673 for .0000672;
- a gold of several comma-separated equations (``v_R=4, v_B=10``) needs every part, each matched by its own
  part of the answer (math-verify would read the first equation only).
"""

from __future__ import annotations

import re
import threading

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

_HASH_RE = re.compile(r"####\s*(.+?)\s*$", re.MULTILINE)
_ANSWER_IS_RE = re.compile(r"[Tt]he (?:final )?answer is:?\s*(.+?)\s*$", re.MULTILINE)
_ANSWER_TAG_RE = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
# Two numbers are equal when they differ by at most this fraction of the larger one.
REL_TOL = 1e-9


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces balanced; None if absent."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
        j += 1
    return None  # unbalanced: the box was cut off, so there is no answer


def boxed_span(text: str) -> tuple[int, int] | None:
    """Character span ``[start, end)`` of the last ``\\boxed{...}`` including the command, or None."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0 or last_boxed(text) is None:
        return None
    depth, j = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
        if depth == 0:
            return start, j


def extract_answer(text: str) -> str | None:
    """The final answer a completion states, in priority order: last box, ``<answer>`` tag, ``####``,
    "The answer is". Returns None when the completion states no answer."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    for pattern in (_ANSWER_TAG_RE, _HASH_RE, _ANSWER_IS_RE):
        matches = pattern.findall(text)
        if matches and matches[-1].strip():
            inner = matches[-1].strip()
            return last_boxed(inner) or inner
    return None


def _parse(answer: str, timeout: int | None):
    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    if "$" not in answer:
        # An extracted answer is bare math ("x+1", "\\frac{1}{2}"); read it inside math delimiters
        # first, since the expression extractor alone stops at the first number of "1+x".
        parsed = parse(f"${answer}$", extraction_config=configs, parsing_timeout=timeout)
        if parsed:
            return parsed
    return parse(answer, extraction_config=configs, parsing_timeout=timeout)


def _normalise(answer: str) -> str:
    """An escaped dollar is a currency sign: drop it (``\\$18.90`` -> ``18.90``)."""
    return answer.replace("\\$", "").strip()


def _top_level_parts(answer: str) -> list[str]:
    """``answer`` split at commas outside braces/brackets/parentheses."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(answer):
        depth += 1 if char in "{[(" else -1 if char in "}])" else 0
        if char == "," and depth == 0:
            parts.append(answer[start:i])
            start = i + 1
    parts.append(answer[start:])
    return [part.strip() for part in parts if part.strip()]


def _equation_parts(answer: str) -> list[str] | None:
    """The parts of a multi-part answer (two or more comma-separated equations), or None."""
    parts = _top_level_parts(answer)
    return parts if len(parts) > 1 and all("=" in part for part in parts) else None


def _single_match(gold: str, predicted: str, timeout: int | None) -> bool:
    gold_parsed, pred_parsed = _parse(gold, timeout), _parse(predicted, timeout)
    if not gold_parsed or not pred_parsed:
        return gold == predicted
    a, b = gold_parsed[0], pred_parsed[0]
    if getattr(a, "is_Integer", False) and getattr(b, "is_Integer", False):
        return bool(a == b)
    if getattr(a, "is_Number", False) and getattr(b, "is_Number", False):
        a, b = float(a), float(b)
        return abs(a - b) <= REL_TOL * max(abs(a), abs(b))
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))


def answers_match(gold: str, predicted: str | None) -> bool:
    """True when ``predicted`` is mathematically equivalent to ``gold`` (math-verify, with the module's rules)."""
    if predicted is None:
        return False
    gold, predicted = _normalise(gold), _normalise(predicted)
    if not predicted or not gold:
        return False
    # math-verify's timeouts use SIGALRM, which exists only in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parts = _equation_parts(gold)
    if gold_parts is None:
        return _single_match(gold, predicted, timeout)
    remaining = _top_level_parts(predicted)
    if len(remaining) != len(gold_parts):
        return False
    for part in gold_parts:  # every gold part matched by a distinct part of the answer, in any order
        hit = next((i for i, candidate in enumerate(remaining) if _single_match(part, candidate, timeout)), None)
        if hit is None:
            return False
        remaining.pop(hit)
    return True


def is_correct(completion: str, gold: str) -> bool:
    """Correctness of a whole completion against the ground-truth answer: the RL reward's and the
    benchmark's single definition."""
    return answers_match(gold, extract_answer(completion))
