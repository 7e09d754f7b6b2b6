"""Shared fixtures: a hermetic ZenML home, one thread, and the tiny model built in-process."""

from __future__ import annotations

import os
import tempfile

# Before anything imports zenml or torch: a throwaway ZenML home (so tests never rewrite the project's
# .zen/), analytics off, one thread (two threads on a busy 2-core machine are slower).
_ZENML_HOME = tempfile.mkdtemp(prefix="igpo-tests-zenml-")
os.environ.setdefault("ZENML_CONFIG_PATH", os.path.join(_ZENML_HOME, "config"))
os.environ.setdefault("ZENML_REPOSITORY_PATH", _ZENML_HOME)
os.makedirs(os.path.join(os.environ["ZENML_REPOSITORY_PATH"], ".zen"), exist_ok=True)  # the repository marker
os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from igpo.models.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture
def tiny_lm(tiny_tokenizer):
    """A fresh, untrained 2-layer tiny dLLM wrapped as DiffusionLM (fresh per test: tests may train it)."""
    from igpo.models import wrap_model
    from igpo.models.tiny import TinyModelConfig, build_tiny_model

    model = build_tiny_model(tiny_tokenizer, TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8, intermediate_size=64))
    return wrap_model(model.eval(), tiny_tokenizer)
