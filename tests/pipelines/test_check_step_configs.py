"""An invalid YAML is rejected while the pipeline function runs, before ZenML compiles the run: one line per
error naming the step and the field, under `zenml pipeline run` (exit 1, no traceback) and from Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from shrink import shrunk_demo_config, write_config

ROOT = Path(__file__).resolve().parents[2]
GEN_LENGTH_ERROR = "train_grpo.config.rollout: gen_length (30) must be a multiple of block_length (16)"


def _bad_config(tmp_path: Path) -> Path:
    config = shrunk_demo_config()
    config["steps"]["train_grpo"]["parameters"]["config"]["rollout"]["gen_length"] = 30
    config["steps"]["train_sft"]["parameters"]["config"]["learning_rat"] = 1e-3
    return write_config(config, tmp_path / "bad.yaml")


def test_an_invalid_yaml_fails_while_the_pipeline_is_prepared(tmp_path):
    from pipelines.config_check import InvalidConfigError
    from pipelines.igpo import igpo_pipeline

    with pytest.raises(InvalidConfigError) as info:
        igpo_pipeline.with_options(config_path=str(_bad_config(tmp_path))).prepare()
    assert info.value.errors == ["train_sft.config.learning_rat: unknown key; did you mean 'learning_rate'?",
                                 GEN_LENGTH_ERROR]
    assert isinstance(info.value, ValueError) and info.value.exit_code == 1


def test_without_a_config_file_there_is_nothing_to_check():
    from pipelines.igpo import evaluate_pipeline

    evaluate_pipeline.prepare()  # no YAML, no error; ZenML reports the missing config when it compiles


def test_the_smaller_pipelines_check_their_steps_too(tmp_path):
    from pipelines.config_check import InvalidConfigError
    from pipelines.igpo import evaluate_pipeline, rl_pipeline

    rl = write_config({"steps": {"train_igpo": {"parameters": {"config": {"group_size": 1, "stepz": 3}}}}},
                      tmp_path / "rl.yaml")
    with pytest.raises(InvalidConfigError) as info:
        rl_pipeline.with_options(config_path=str(rl)).prepare()
    assert info.value.errors == ["train_igpo.config.stepz: unknown key; did you mean 'steps'?"]
    evaluate = write_config({"steps": {"evaluate_benchmark": {"parameters": {"config": {}}}}}, tmp_path / "ev.yaml")
    with pytest.raises(InvalidConfigError) as info:
        evaluate_pipeline.with_options(config_path=str(evaluate)).prepare()
    (error,) = info.value.errors
    assert error == ("evaluate_benchmarks.config: missing (steps.evaluate_benchmarks.parameters.config in the YAML); "
                     "did you mean 'evaluate_benchmark'?")


def test_the_check_only_command(tmp_path, capsys):
    from pipelines.config_check import main

    assert main(["pipelines.igpo.igpo_pipeline", str(ROOT / "configs" / "demo_tiny_cpu.yaml")]) == 0
    assert main(["pipelines.igpo.igpo_pipeline", str(_bad_config(tmp_path))]) == 1
    assert GEN_LENGTH_ERROR in capsys.readouterr().err


@pytest.mark.slow
def test_zenml_pipeline_run_prints_one_line_per_error_and_no_traceback(tmp_path):
    """The README's command, in a subprocess on the tests' hermetic ZenML home."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    zenml = Path(sys.executable).with_name("zenml")
    command = [str(zenml), "pipeline", "run", "pipelines.igpo.igpo_pipeline", "--config", str(_bad_config(tmp_path))]
    result = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and "Input validation failed" not in output, output
    lines = output.strip().splitlines()
    assert lines[-2:] == ["train_sft.config.learning_rat: unknown key; did you mean 'learning_rate'?",
                          GEN_LENGTH_ERROR], output
    assert lines[-3].startswith("Invalid config ") and lines[-3].endswith("2 errors, nothing was run"), output
