"""Security: no committed credential; an API key from the environment never reaches MLflow, ZenML step
configs or logs; remote code is off unless a model config enables it; weights load from safetensors only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Patterns are assembled so that this file does not match itself.
CREDENTIAL_PATTERNS = {
    "OpenAI-style key": re.compile("sk-" + r"(?:proj-)?[A-Za-z0-9]{20,}"),
    "AWS access key id": re.compile("AKIA" + r"[0-9A-Z]{16}"),
    "private key": re.compile("-----BEGIN " + r"(?:RSA |EC |OPENSSH |DSA |PGP )?PRIVATE KEY-----"),
    "Hugging Face token": re.compile("hf_" + r"[A-Za-z0-9]{30,}"),
    "GitHub token": re.compile("gh[pousr]_" + r"[A-Za-z0-9]{30,}"),
    "key literal in config": re.compile(r"""(?i)(?:api_key|secret|token|password)\s*[:=]\s*["'][A-Za-z0-9_\-]{24,}["']"""),
}

# Test fixtures that spell out an obviously fake key (e.g. "sk-live-0123456789abcdef") are allowed.
FAKE_MARKERS = re.compile(r"(?i)test|fake|dummy|example|0123456789|do-not-leak|xxxx")


def _repository_files() -> list[Path]:
    """Tracked files plus untracked, not ignored ones (what the next commit could add)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def test_no_credential_is_committed():
    found = []
    for file in _repository_files():
        if file.stat().st_size > 5_000_000:
            continue
        text = file.read_bytes().decode("utf-8", "replace")
        for kind, pattern in CREDENTIAL_PATTERNS.items():
            for match in pattern.finditer(text):
                if FAKE_MARKERS.search(match.group(0)):
                    continue
                found.append(f"{file.relative_to(ROOT)}: {kind}: {match.group(0)[:12]}...")
    assert not found, "credential-like strings in the repository:\n" + "\n".join(found)


def test_the_scanner_finds_what_it_looks_for():
    fake = {"OpenAI-style key": "sk-" + "A1" * 12, "AWS access key id": "AKIA" + "ABCD1234" * 2,
            "private key": "-----BEGIN " + "RSA PRIVATE KEY-----", "key literal in config": 'api_key: "' + "x" * 30 + '"'}
    for kind, text in fake.items():
        assert CREDENTIAL_PATTERNS[kind].search(text), kind


# --------------------------------------------------------------------------------- remote code, pickles


def test_remote_code_is_off_unless_a_config_enables_it(monkeypatch):
    import transformers

    from igpo.data.config import TransformersBackendConfig
    from igpo.models import ModelConfig, load_model

    assert ModelConfig(name_or_path="x").trust_remote_code is False
    assert TransformersBackendConfig().trust_remote_code is False
    calls = []

    class Stop(Exception):
        pass

    def record(name):
        def from_pretrained(*args, **kwargs):
            calls.append((name, kwargs))
            raise Stop

        return from_pretrained

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", record("config"))
    # A model outside the native families (LLaDA/Dream never run checkpoint code: tests/igpo/models/test_loading.py).
    monkeypatch.setattr("igpo.models.loading.model_type_of", lambda *_: "some_remote_code_model")
    for enabled in (False, True):
        calls.clear()
        with pytest.raises(Stop):
            load_model(ModelConfig(name_or_path="some/model", trust_remote_code=enabled))
        assert calls[0][1]["trust_remote_code"] is enabled


class _Payload:
    """A pickle that creates a file when unpickled (what a malicious pytorch_model.bin does)."""

    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture
def saved_tiny(tiny_tokenizer, tmp_path):
    from igpo.models import ModelConfig, save_model, wrap_model
    from igpo.models.tiny import TinyModelConfig, build_tiny_model

    model = build_tiny_model(tiny_tokenizer, TinyModelConfig(num_layers=1, hidden_size=32, head_dim=8, intermediate_size=64))
    directory = tmp_path / "model"
    save_model(wrap_model(model.eval(), tiny_tokenizer), directory, ModelConfig(name_or_path="."))
    return directory


def _plant_pickle(directory: Path, marker: Path) -> None:
    payload = _Payload()
    payload.marker = str(marker)
    torch.save({"model.embed_tokens.weight": payload}, directory / "pytorch_model.bin")


def test_a_pickle_next_to_safetensors_is_never_unpickled(saved_tiny, tmp_path):
    from igpo.checkpoint import load_weights
    from igpo.models import ModelConfig, load_model

    marker = tmp_path / "pwned"
    _plant_pickle(saved_tiny, marker)
    lm = load_model(ModelConfig(name_or_path=str(saved_tiny)))
    load_weights(lm.model, saved_tiny)
    assert not marker.exists()


def test_a_model_dir_with_only_a_pickle_is_refused(saved_tiny, tmp_path):
    from igpo.checkpoint import CheckpointError, load_weights
    from igpo.models import ModelConfig, load_model

    marker = tmp_path / "pwned"
    lm = load_model(ModelConfig(name_or_path=str(saved_tiny)))
    for weights in saved_tiny.glob("*.safetensors"):
        weights.unlink()
    _plant_pickle(saved_tiny, marker)
    with pytest.raises((OSError, EnvironmentError), match="safetensors"):
        load_model(ModelConfig(name_or_path=str(saved_tiny)))
    with pytest.raises(CheckpointError, match="no .safetensors"):
        load_weights(lm.model, saved_tiny)
    assert not marker.exists()


# --------------------------------------------------------------------------- the key through a pipeline

KEY_ENV = "IGPO_SECURITY_TEST_KEY"


@pytest.mark.slow
def test_an_environment_api_key_reaches_no_config_store_or_log(tmp_path, capfd, monkeypatch):
    sys.path.insert(0, str(ROOT / "tests" / "igpo" / "data"))
    from data_fixtures import FakeChatServer, Reply
    from zenml import pipeline
    from zenml.client import Client

    from pipelines.stack import ensure_local_stack
    from steps.ingest_datasets import ingest_datasets
    from steps.prepare_base_model import prepare_base_model
    from steps.rewrite_traces import rewrite_traces

    key = "sk-" + os.urandom(16).hex()  # made at runtime, never in a file
    monkeypatch.setenv(KEY_ENV, key)
    tracking_uri = ensure_local_stack()  # the session's hermetic store (re-pointing it mid-session is not picked up)
    server = FakeChatServer()
    seen_auth = []

    def behaviour(tag, attempt):
        seen_auth.append(server.log[-1]["auth"] if server.log else None)
        return Reply(content="Short. The answer is \\boxed{0}")

    server.behaviour = behaviour

    @pipeline(enable_cache=False)
    def rewrite_only() -> None:
        base = prepare_base_model()
        sft_table, _, _, _ = ingest_datasets()
        rewrite_traces(sft_table, base)

    tiny = {"num_layers": 1, "hidden_size": 32, "head_dim": 8, "intermediate_size": 64}
    settings = {"steps": {
        "prepare_base_model": {"parameters": {"config": {"source": "tiny", "tiny": tiny}}},
        "ingest_datasets": {"parameters": {"config": {"demo": {"num_train": 4, "num_test": 1}}}},
        "rewrite_traces": {"experiment_tracker": "igpo_mlflow", "parameters": {"config": {
            "backend": "openai", "token_budget": 8, "show_progress": False, "cache_dir": str(tmp_path / "cache"),
            "openai": {"base_url": server.base_url, "model": "teacher", "api_key_env": KEY_ENV, "max_attempts": 1}}}},
    }}
    import yaml

    config_path = tmp_path / "rewrite.yaml"
    config_path.write_text(yaml.safe_dump(settings))
    try:
        run = rewrite_only.with_options(config_path=str(config_path))()
    finally:
        server.close()
    assert server.log and all(entry["auth"] == f"Bearer {key}" for entry in server.log)  # the key was used

    run = Client().get_pipeline_run(run.id)
    texts = {"run": run.model_dump_json()}
    for name, step in run.steps.items():
        texts[f"step {name} config"] = step.config.model_dump_json()
        texts[f"step {name} metadata"] = str(step.run_metadata)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    runs = mlflow.search_runs(search_all_experiments=True)
    assert len(runs) > 0
    texts["mlflow runs"] = runs.to_json()
    out, err = capfd.readouterr()
    texts["captured output"] = out + err
    leaks = [where for where, text in texts.items() if key in text]
    # Every file the ZenML store, artifact store (step logs included), MLflow and the rewrite cache wrote.
    mlflow_dir = Path(tracking_uri.removeprefix("sqlite:///")).parent
    roots = [Path(os.environ["ZENML_CONFIG_PATH"]), mlflow_dir, tmp_path / "cache"]
    assert all(root.is_dir() for root in roots), roots
    for root in roots:
        for file in root.rglob("*"):
            if file.is_file() and key.encode() in file.read_bytes():
                leaks.append(str(file))
    assert not leaks, f"the API key leaked into: {leaks}"
