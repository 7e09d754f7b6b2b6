"""What each training stage gets from ingest: the demo's easy rows for SFT, easy and hard for RL."""

from __future__ import annotations

import json

from igpo.data.config import DemoTaskConfig, IngestConfig
from igpo.data.ingest import ingest, training_table


def _difficulties(table):
    return {json.loads(m)["difficulty"] for m in table.column("metadata").to_pylist()}


def test_sft_takes_the_easy_rows_and_rl_takes_both():
    demo = DemoTaskConfig(num_train=40, num_test=10, easy_steps=(1, 2), hard_steps=(3,), num_train_hard=15,
                          num_test_hard=5, reasoning="concise")
    config = IngestConfig(demo=demo, sft_sources=["demo"], rl_sources=["demo"])
    result = ingest(config)
    sft, rl = training_table(result, config, "sft"), training_table(result, config, "rl")
    assert _difficulties(sft) == {"easy"} and sft.num_rows == 25
    assert _difficulties(rl) == {"easy", "hard"} and rl.num_rows == 40
    assert _difficulties(result.eval["demo"]) == {"easy", "hard"}


def test_a_single_difficulty_task_trains_every_stage_on_all_of_it():
    config = IngestConfig(demo=DemoTaskConfig(num_train=30, num_test=5, num_steps=2), sft_sources=["demo"],
                          rl_sources=["demo"])
    result = ingest(config)
    assert training_table(result, config, "sft").num_rows == training_table(result, config, "rl").num_rows == 30
