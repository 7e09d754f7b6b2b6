"""The demo task: determinism, disjoint splits, verifiable answers, the difficulty knob, sizes."""

from __future__ import annotations

import json
import string

import pytest

from igpo.data.config import DemoTaskConfig
from igpo.data.demo_task import generate_demo_task, make_problem, question_space_size
from igpo.data.rewrite import extractive_condense
from igpo.data.schema import CANONICAL_SCHEMA, metadata_of
from igpo.verify import extract_answer, is_correct


def test_same_seed_same_tables_other_seed_other_tables():
    config = DemoTaskConfig(num_train=50, num_test=10, seed=3)
    first, again = generate_demo_task(config), generate_demo_task(config)
    assert first[0].equals(again[0]) and first[1].equals(again[1])
    other = generate_demo_task(config.model_copy(update={"seed": 4}))
    assert other[0].column("question").to_pylist() != first[0].column("question").to_pylist()


def test_splits_never_share_a_question():
    train, test = generate_demo_task(DemoTaskConfig(num_train=250, num_test=74, num_steps=2))  # the whole space
    train_q, test_q = set(train.column("question").to_pylist()), set(test.column("question").to_pylist())
    assert len(train_q) == 250 and len(test_q) == 74 and not train_q & test_q
    assert set(train.column("split").to_pylist()) == {"train"} and set(test.column("split").to_pylist()) == {"test"}
    assert train.schema.equals(CANONICAL_SCHEMA) and set(train.column("source").to_pylist()) == {"demo"}


def test_traces_are_correct_arithmetic_and_verify():
    train, _ = generate_demo_task(DemoTaskConfig(num_train=100, num_test=1))
    for row, meta in zip(train.to_pylist(), metadata_of(train)):
        current = meta["start"]
        for op, value in zip(meta["operations"], meta["values"]):
            current = (current + int(op)) % 10  # int("-2") == -2
            assert current == value
        assert row["answer"] == str(meta["start"]) + "".join(map(str, meta["values"]))
        assert row["answer"][0] != "0"  # math-verify would ignore a leading zero
        concise = meta["concise_trace"]
        assert extract_answer(concise) == row["answer"] and is_correct(concise, row["answer"])
        assert is_correct(row["reasoning"], row["answer"])  # the verbose trace states the same answer
        wrong = concise.replace(f"\\boxed{{{row['answer']}}}", f"\\boxed{{{row['answer'][:-1]}}}")
        assert not is_correct(wrong, row["answer"])  # a dropped digit is wrong, not "close enough"


def test_difficulty_knob_sets_the_number_of_steps():
    for steps in (1, 3, 6):
        train, _ = generate_demo_task(DemoTaskConfig(num_train=20, num_test=5, num_steps=steps))
        for row, meta in zip(train.to_pylist(), metadata_of(train)):
            assert len(meta["operations"]) == steps and len(row["answer"]) == steps + 1
            assert len(meta["concise_trace"].splitlines()) == steps + 1  # one line per step, then the box


def test_sizes_fit_the_tiny_model_and_verbose_is_much_longer(tiny_tokenizer):
    for steps in (3, 4):
        train, _ = generate_demo_task(DemoTaskConfig(num_train=200, num_test=10, num_steps=steps))
        for row, meta in zip(train.to_pylist(), metadata_of(train)):
            concise = meta["concise_trace"]
            assert len(row["question"]) + len(concise) <= 128
            assert len(row["reasoning"]) >= 4 * len(concise)
            assert set(row["question"] + row["reasoning"] + concise) <= set(string.printable)
            ids = tiny_tokenizer(concise, add_special_tokens=False).input_ids
            assert tiny_tokenizer.decode(ids) == concise  # the character tokenizer covers every symbol


def test_extractive_rewriter_recovers_the_concise_trace_exactly():
    train, test = generate_demo_task(DemoTaskConfig(num_train=200, num_test=20, num_steps=5))
    for table in (train, test):
        for row, meta in zip(table.to_pylist(), metadata_of(table)):
            assert extractive_condense(row["reasoning"]) == meta["concise_trace"]


def test_concise_reasoning_option_and_config_checks():
    train, _ = generate_demo_task(DemoTaskConfig(num_train=5, num_test=5, reasoning="concise"))
    assert train.column("reasoning").to_pylist() == [m["concise_trace"] for m in metadata_of(train)]
    assert question_space_size(DemoTaskConfig(num_train=1, num_test=1, num_steps=2)) == 9 * 36
    with pytest.raises(ValueError, match="exceeds the 324 distinct questions"):
        DemoTaskConfig(num_train=300, num_test=30, num_steps=2)
    with pytest.raises(ValueError, match="distinct digits in 1..9"):
        DemoTaskConfig(operands=(0, 1))


def test_make_problem_example_from_the_docstring():
    problem = make_problem(7, ("+3", "-2", "+1", "-3"))
    assert problem.values == (0, 8, 9, 6) and problem.answer == "70896"
    assert problem.question == "Start at 7, then +3 -2 +1 -3 (mod 10). Give each value."
    assert problem.concise_trace == "7+3=0\n0-2=8\n8+1=9\n9-3=6\n\\boxed{70896}"
    assert json.dumps(problem.concise_trace).isascii()
