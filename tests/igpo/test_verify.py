"""The shared verifier: the last box wins, other answer forms, real math equivalence."""

from __future__ import annotations

import pytest

from igpo.verify import boxed_span, extract_answer, is_correct, last_boxed


@pytest.mark.parametrize(
    "text,answer",
    [
        (r"first \boxed{1} then \boxed{2}", "2"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        ("steps\n#### 1,234", "1,234"),
        ("so The answer is: 42", "42"),
        ("<reasoning>x</reasoning><answer>7</answer>", "7"),
        ("no answer here", None),
        (r"cut off \boxed{12", None),
    ],
)
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    "completion,gold,ok",
    [
        (r"\boxed{0.5}", r"\frac{1}{2}", True),
        ("#### 1,000", "1000", True),
        ("The answer is: x+1", "1+x", True),
        (r"\boxed{3} and later \boxed{4}", "3", False),
        (r"\boxed{7}", "8", False),
        ("nothing", "3", False),
    ],
)
def test_is_correct(completion, gold, ok):
    assert is_correct(completion, gold) is ok


def test_boxed_span_covers_the_command():
    text = r"a \boxed{x{1}} b"
    start, end = boxed_span(text)
    assert text[start:end] == r"\boxed{x{1}}"
    assert last_boxed(text) == "x{1}"
