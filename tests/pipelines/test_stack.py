"""pipelines.stack turns ZenML's analytics off in the global config itself, not only through the environment,
so the README's plain `zenml pipeline run ...` sends nothing either."""

from __future__ import annotations

from pathlib import Path

import yaml


def _stored_opt_in() -> bool:
    from zenml.config.global_config import GlobalConfiguration

    return yaml.safe_load((Path(GlobalConfiguration().config_directory) / "config.yaml").read_text())["analytics_opt_in"]


def test_setting_up_the_stack_opts_out_of_analytics_persistently():
    from zenml.config.global_config import GlobalConfiguration

    from pipelines.stack import STACK_NAME, ensure_local_stack

    GlobalConfiguration().analytics_opt_in = True  # what a fresh ZenML home holds (the env var only masks it)
    assert _stored_opt_in() is True
    ensure_local_stack()
    assert _stored_opt_in() is False
    from zenml.client import Client

    assert Client().active_stack_model.name == STACK_NAME
