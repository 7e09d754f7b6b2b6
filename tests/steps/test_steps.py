"""Every step through ``.entrypoint()``: the thin wrappers wire the core correctly, outside any pipeline run."""

from __future__ import annotations

import pandas as pd
import pytest

from igpo.data.config import DemoTaskConfig, IngestConfig, RewriteConfig
from igpo.evaluate import BenchmarkConfig, EvalConfig
from igpo.models import BaseModelConfig, load_model_dir
from igpo.models.tiny import TinyModelConfig
from igpo.rl.config import RLConfig
from igpo.sampler import SamplerConfig
from igpo.sft import SFTConfig

SAMPLER = SamplerConfig(gen_length=48, block_length=16, steps=6, temperature=1.0)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import os

    os.environ["IGPO_WORK_DIR"] = str(tmp_path_factory.mktemp("work"))
    return tmp_path_factory


def test_steps_chain_through_entrypoints(env):
    from steps.build_report import build_report
    from steps.evaluate_benchmarks import evaluate_benchmarks
    from steps.ingest_datasets import ingest_datasets
    from steps.prepare_base_model import prepare_base_model
    from steps.rewrite_traces import rewrite_traces
    from steps.train_igpo import train_igpo
    from steps.train_sft import train_sft

    base = prepare_base_model.entrypoint(BaseModelConfig(tiny=TinyModelConfig(num_layers=1, hidden_size=32, head_dim=8)))
    assert (base / "model.safetensors").exists() and (base / "igpo_model.json").exists()

    sft_table, rl_table, eval_table, quarantine = ingest_datasets.entrypoint(
        IngestConfig(demo=DemoTaskConfig(num_train=20, num_test=4, num_steps=4), sft_sources=("demo",), rl_sources=("demo",))
    )
    assert len(sft_table) == len(rl_table) == 20 and set(eval_table["source"]) == {"demo"} and quarantine.empty

    rewritten, failures = rewrite_traces.entrypoint(sft_table, base, RewriteConfig(backend="extractive", token_budget=47,
                                                                                   show_progress=False))
    assert len(rewritten) + len(failures) >= 20 and failures.empty
    assert rewritten["reasoning"].str.len().max() < sft_table["reasoning"].str.len().min()  # condensed

    sft_checkpoint, sft_metrics = train_sft.entrypoint(
        base, rewritten, SFTConfig(steps=2, batch_size=2, max_response_tokens=48, pad_response_to=48)
    )
    assert len(sft_metrics) == 2 and (sft_checkpoint / "model.safetensors").exists()

    rl = RLConfig(algorithm="igpo", steps=1, batch_size=2, group_size=2, mu=1, rollout=SAMPLER, beta=0.0,
                  learning_rate=1e-4, s_min=3, s_max=6)
    rl_checkpoint, rl_metrics = train_igpo.entrypoint(sft_checkpoint, rl_table, rl)
    assert {"all_wrong_fraction", "zero_advantage_fraction", "seconds/rollout"} <= set(rl_metrics.columns)
    assert load_model_dir(rl_checkpoint).tokens == load_model_dir(base).tokens

    eval_config = EvalConfig(benchmarks=(BenchmarkConfig(name="demo", sampler=SAMPLER.model_copy(update={"temperature": 0.0})),),
                             batch_size=4)
    scores, samples = evaluate_benchmarks.entrypoint(rl_checkpoint, eval_table, eval_config, "sft+igpo")
    assert scores.loc[0, "n_questions"] == 4 and len(samples) == 4

    page, table, text = build_report.entrypoint(scores, scores, scores, scores, rl_metrics, rl_metrics)
    assert "<html>" in str(page) and len(table) == 4 and "all-wrong" in text
    assert isinstance(table, pd.DataFrame)


def test_the_rl_steps_output_artifacts_named_by_algorithm_and_refuse_the_other_one():
    import typing

    from steps.train_grpo import train_grpo
    from steps.train_igpo import train_igpo

    def output_names(step) -> list[str]:
        return [a.__metadata__[0] for a in typing.get_args(typing.get_type_hints(step.entrypoint, include_extras=True)["return"])]

    assert output_names(train_grpo) == ["grpo_checkpoint", "grpo_metrics"]
    assert output_names(train_igpo) == ["igpo_checkpoint", "igpo_metrics"]
    # Refused before anything is loaded: a GRPO model never becomes an "igpo_checkpoint", and vice versa.
    with pytest.raises(ValueError, match="'grpo' cannot be trained by the step that outputs 'igpo_checkpoint'"):
        train_igpo.entrypoint(None, pd.DataFrame(), RLConfig(algorithm="grpo"))
    for algorithm in ("igpo", "dynamic"):
        with pytest.raises(ValueError, match="outputs 'grpo_checkpoint'"):
            train_grpo.entrypoint(None, pd.DataFrame(), RLConfig(algorithm=algorithm))
