"""The demo's SFT model, trained the way ``make demo`` trains it, for the benchmarks that measure "the trained
demo model" (``train_step.py --compare-model demo``, ``llada_sampler.py --model-dir demo``).

The stages the demo pipeline runs before RL (prepare_base_model -> ingest_datasets -> rewrite_traces ->
train_sft), called as the core functions its steps wrap, with the step configs of ``configs/demo_tiny_cpu.yaml``
(no ZenML). The result is cached under ``benchmarks/results/tmp/`` keyed by those configs and
``igpo.provenance.code_fingerprint`` (the project's code and numeric library versions), so a change of either
trains it again. Also the demo's RL prompts (``demo_rl_rows``), held-out questions (``demo_test_rows``) and RL config
(``demo_rl_config``).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks import common

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_tiny_cpu.yaml"


def step_configs(path: Path = DEMO_CONFIG) -> dict[str, dict[str, Any]]:
    """``steps.<name>.parameters.config`` of a pipeline YAML, by step name (YAML anchors resolved)."""
    import yaml

    steps = yaml.safe_load(path.read_text())["steps"]
    return {name: (spec or {}).get("parameters", {}).get("config", {}) for name, spec in steps.items()}


def _tables(configs: dict[str, dict[str, Any]]) -> tuple[Any, Any]:
    """(SFT table, RL table) as ingest_datasets gives them."""
    from igpo.data.config import IngestConfig
    from igpo.data.ingest import ingest, training_table

    config = IngestConfig(**configs["ingest_datasets"])
    result = ingest(config)
    return training_table(result, config, "sft"), training_table(result, config, "rl")


def demo_rl_rows(path: Path = DEMO_CONFIG) -> list[dict[str, Any]]:
    """The demo's RL prompts (rows with question, answer, reasoning, metadata)."""
    return _tables(step_configs(path))[1].to_pylist()


def demo_test_rows(path: Path = DEMO_CONFIG) -> list[dict[str, Any]]:
    """The demo's held-out questions (easy and hard; ``metadata`` says which)."""
    from igpo.data.config import IngestConfig
    from igpo.data.ingest import ingest

    return ingest(IngestConfig(**step_configs(path)["ingest_datasets"])).eval["demo"].to_pylist()


def demo_rl_config(path: Path = DEMO_CONFIG) -> dict[str, Any]:
    """The demo's ``train_igpo`` config as a dict (``RLConfig`` fields)."""
    return dict(step_configs(path)["train_igpo"])


def demo_checkpoint(path: Path = DEMO_CONFIG, cache_dir: Path = common.CACHE_DIR) -> Path:
    """The directory of the demo's SFT model (trained on first use, about as long as the demo's SFT stage)."""
    from igpo.data.config import RewriteConfig
    from igpo.data.rewrite import rewrite_traces
    from igpo.models import BaseModelConfig, load_model_dir, load_tokenizer, model_config_of, save_model
    from igpo.models import prepare_base_model as prepare
    from igpo.provenance import code_fingerprint
    from igpo.sft import SFTConfig, train_sft

    configs = step_configs(path)
    wanted = {k: configs[k] for k in ("prepare_base_model", "ingest_datasets", "rewrite_traces", "train_sft")}
    key = hashlib.sha256((json.dumps(wanted, sort_keys=True) + code_fingerprint()).encode()).hexdigest()[:16]
    out = cache_dir / f"demo-sft-{key}"
    if (out / "config.json").is_file():
        return out
    work = cache_dir / f"demo-sft-{key}.partial"
    shutil.rmtree(work, ignore_errors=True)
    base = prepare(BaseModelConfig(**wanted["prepare_base_model"]), work / "base")
    sft_table, _ = _tables(configs)
    rewritten = rewrite_traces(sft_table, RewriteConfig(**wanted["rewrite_traces"]), load_tokenizer(base)).table
    lm = load_model_dir(base, "cpu")
    sft = SFTConfig(**{k: v for k, v in wanted["train_sft"].items() if k != "checkpoint"})
    print(f"training the demo's SFT model ({sft.steps} steps) into {out}", flush=True)
    train_sft(lm, rewritten.column("question").to_pylist(), rewritten.column("reasoning").to_pylist(), sft,
              progress=False)
    save_model(lm, work / "model", model_config_of(base))
    (work / "model").rename(out)
    shutil.rmtree(work, ignore_errors=True)
    return out
