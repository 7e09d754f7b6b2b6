"""Fixtures of the RL tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def toy_examples():
    return [
        {"question": f"{i}+{i}?", "answer": str(2 * i), "reasoning": f"we see {i} and {i}, sum them. The answer is {2 * i}"}
        for i in range(6)
    ]
