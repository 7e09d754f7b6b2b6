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


HARD_SPLIT = {
    "num_train": 300, "num_test": 80, "split": "steps", "easy_steps": (1, 2), "hard_steps": (3, 4),
    "num_train_hard": 120, "num_test_hard": 40,
}


def test_hard_split_labels_counts_and_selection():
    from igpo.data.demo_task import difficulty_of, rows_of_difficulty

    config = DemoTaskConfig(**HARD_SPLIT)
    train, test = generate_demo_task(config)
    assert (train.num_rows, test.num_rows) == (300, 80)
    for table, hard_rows in ((train, 120), (test, 40)):
        metas = metadata_of(table)
        assert sum(m["difficulty"] == "hard" for m in metas) == hard_rows
        for row, meta in zip(table.to_pylist(), metas):
            steps = config.step_counts()[meta["difficulty"]]
            assert meta["num_steps"] in steps and len(meta["operations"]) == meta["num_steps"]
            assert len(row["answer"]) == meta["num_steps"] + 1 and is_correct(meta["concise_trace"], row["answer"])
            assert difficulty_of(row) == meta["difficulty"]
        # Every step count of a difficulty is present (spread evenly, not drawn by space size).
        assert {m["num_steps"] for m in metas} == {1, 2, 3, 4}
    sft = rows_of_difficulty(train, config.sft_difficulties)
    rl = rows_of_difficulty(train, config.rl_difficulties)
    assert sft.num_rows == 180 and {m["difficulty"] for m in metadata_of(sft)} == {"easy"}
    assert rl.num_rows == 300 and rl.equals(train)
    assert rows_of_difficulty(test, ["hard"]).num_rows == 40
    # The first rows of the RL table mix difficulties (the tables are shuffled, not sorted by difficulty).
    assert {m["difficulty"] for m in metadata_of(train.slice(0, 20))} == {"easy", "hard"}


def test_hard_split_questions_unique_and_disjoint_across_splits():
    train, test = generate_demo_task(DemoTaskConfig(**HARD_SPLIT))
    train_q, test_q = train.column("question").to_pylist(), test.column("question").to_pylist()
    assert len(set(train_q)) == len(train_q) and len(set(test_q)) == len(test_q) and not set(train_q) & set(test_q)
    again = generate_demo_task(DemoTaskConfig(**HARD_SPLIT))
    assert train.equals(again[0]) and test.equals(again[1])


def test_hard_split_spreads_rows_within_the_small_one_step_space():
    from igpo.data.config import spread_over_step_counts

    assert spread_over_step_counts(10, [54, 324]) == [5, 5]
    assert spread_over_step_counts(300, [54, 324]) == [54, 246]  # only 54 one-step questions exist
    train, test = generate_demo_task(DemoTaskConfig(num_train=300, num_test=60, split="steps", easy_steps=(1, 2)))
    steps = [m["num_steps"] for m in metadata_of(train) + metadata_of(test)]
    assert steps.count(1) == 54 and steps.count(2) == 306


def test_single_difficulty_rows_are_easy_and_old_draw_is_unchanged():
    from igpo.data.demo_task import rows_of_difficulty

    config = DemoTaskConfig(num_train=30, num_test=5, num_steps=2)
    train, _ = generate_demo_task(config)
    assert {m["difficulty"] for m in metadata_of(train)} == {"easy"} and {m["num_steps"] for m in metadata_of(train)} == {2}
    assert rows_of_difficulty(train, config.sft_difficulties).equals(train)
    assert rows_of_difficulty(train, config.rl_difficulties).equals(train)
    # The single-difficulty draw is the original one: the first question of seed 0 is what it always was.
    assert train.column("question")[0].as_py() == _first_question_of_the_original_generator(config)


def _first_question_of_the_original_generator(config):
    import random

    from igpo.data.demo_task import _decode

    index = random.Random(config.seed).sample(range(question_space_size(config)), config.num_train + config.num_test)[0]
    return _decode(index, config).question


def test_hard_split_config_checks():
    with pytest.raises(ValueError, match="cannot exceed"):
        DemoTaskConfig(num_train=10, num_test=10, split="steps", easy_steps=(1,), num_train_hard=11)
    with pytest.raises(ValueError, match="cannot exceed"):
        DemoTaskConfig(num_train=10, num_test=10, split="wraps", num_test_hard=11)
    with pytest.raises(ValueError, match="overlap"):
        DemoTaskConfig(num_train=10, num_test=10, split="steps", easy_steps=(1, 2), hard_steps=(2, 3))
    with pytest.raises(ValueError, match="only 378 distinct ones"):
        DemoTaskConfig(num_train=400, num_test=10, split="steps", easy_steps=(1, 2), hard_steps=(3,))
    with pytest.raises(ValueError, match="only 262 distinct ones"):  # 3-step chains wrapping 2 or 3 times
        generate_demo_task(DemoTaskConfig(num_train=300, num_test=10, split="wraps", num_steps=3, hard_min_wraps=2,
                                          num_train_hard=260, num_test_hard=5))
    with pytest.raises(ValueError, match="distinct integers in 1..12"):
        DemoTaskConfig(easy_steps=(0,))
    with pytest.raises(ValueError):
        DemoTaskConfig(sft_difficulties=("medium",))
    with pytest.raises(ValueError, match="needs easy_steps"):
        DemoTaskConfig(num_train=10, num_test=10, split="steps")
    assert DemoTaskConfig(num_train=10, num_test=10, easy_steps=(1,)).split == "steps"  # easy_steps alone: 'steps'
    assert DemoTaskConfig().split == "none"


def test_wraps_split_easy_never_wraps_hard_always_does():
    from igpo.data.demo_task import rows_of_difficulty, wraps

    config = DemoTaskConfig(num_train=400, num_test=100, split="wraps", num_steps=3, hard_min_wraps=1,
                            num_train_hard=200, num_test_hard=50)
    train, test = generate_demo_task(config)
    for table, hard_rows in ((train, 200), (test, 50)):
        metas = metadata_of(table)
        assert sum(m["difficulty"] == "hard" for m in metas) == hard_rows
        for meta in metas:
            count = wraps(make_problem(meta["start"], tuple(meta["operations"])))
            assert meta["num_steps"] == 3 and (count == 0) == (meta["difficulty"] == "easy")
    assert not set(train.column("question").to_pylist()) & set(test.column("question").to_pylist())
    assert {m["difficulty"] for m in metadata_of(rows_of_difficulty(train, config.sft_difficulties))} == {"easy"}
    assert wraps(make_problem(8, ("+3", "-1"))) == 1 and wraps(make_problem(5, ("+3", "-2"))) == 0
    assert wraps(make_problem(1, ("-2", "+3"))) == 2  # 1 - 2 = -1 -> 9, then 9 + 3 = 12 -> 2
