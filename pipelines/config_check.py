"""Reject an invalid run config before anything runs: one line per error, naming the step and the field.

    python -m pipelines.config_check pipelines.igpo.igpo_pipeline configs/demo_tiny_cpu.yaml   # check only

Every pipeline function ends with ``check_step_configs()``. ZenML calls the pipeline function to build the DAG
before it applies the YAML's ``steps.<name>.parameters`` (where its own check names only the step input:
"Input validation failed for input 'config'"), so this is the first point at which both the steps and the YAML
are known, under ``zenml pipeline run ... --config X.yaml`` and ``pipeline.with_options(config_path=X)()``
alike. The error is a ``click.ClickException``: the ZenML CLI prints it and exits 1 without a traceback; a
Python caller gets an exception (also a ``ValueError``). The checks themselves are ``igpo.config_check``.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import BaseModel

from igpo.config_check import check_run_config


class InvalidConfigError(click.ClickException, ValueError):
    """The run config has errors; ``errors`` holds one message per error."""

    def __init__(self, config_path: str | Path, errors: list[str]) -> None:
        self.config_path, self.errors = str(config_path), errors
        noun = "error" if len(errors) == 1 else "errors"
        super().__init__(f"{config_path}: {len(errors)} {noun}, nothing was run\n" + "\n".join(errors))

    def show(self, file: Any = None) -> None:
        click.echo(f"Invalid config {self.message}", file=file or sys.stderr)


def step_signatures(invocations: Iterable[Any]) -> tuple[dict[str, type[BaseModel]], dict[str, list[str]]]:
    """(step name -> pydantic type of its ``config`` parameter, step name -> its parameter names) of a
    pipeline's step invocations (``Pipeline.invocations.values()``)."""
    models, parameters = {}, {}
    for invocation in invocations:
        entrypoint = invocation.step.entrypoint
        parameters[invocation.id] = list(inspect.signature(entrypoint).parameters)
        model = typing.get_type_hints(entrypoint).get("config")
        if isinstance(model, type) and issubclass(model, BaseModel):
            models[invocation.id] = model
    return models, parameters


def check_config_file(config_path: str | Path, invocations: Iterable[Any]) -> list[str]:
    """The errors of a run config YAML for the given step invocations ([] = valid)."""
    path = Path(config_path)
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        return [f"cannot read the YAML: {error}"]
    return check_run_config(document, *step_signatures(invocations))


def check_step_configs() -> None:
    """Called last in a pipeline function: raise ``InvalidConfigError`` if the run's YAML has errors.

    Does nothing outside pipeline compilation or when the run has no config file."""
    from zenml.pipelines.compilation_context import PipelineCompilationContext

    context = PipelineCompilationContext.get()
    if context is None:
        return
    pipeline = context.pipeline
    # The YAML given to `with_options(config_path=...)` / `zenml pipeline run --config`; ZenML keeps it here
    # until it compiles the run (0.98 has no public accessor).
    config_path = getattr(pipeline, "_run_args", {}).get("config_path")
    if config_path and (errors := check_config_file(config_path, pipeline.invocations.values())):
        raise InvalidConfigError(config_path, errors)


def main(argv: list[str] | None = None) -> int:
    """Check a YAML against a pipeline without running anything; exit 1 with the errors, 0 when valid."""
    import argparse

    from zenml.utils import source_utils

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline", help="the pipeline's import path, e.g. pipelines.igpo.igpo_pipeline")
    parser.add_argument("config", help="the run config YAML, e.g. configs/demo_tiny_cpu.yaml")
    args = parser.parse_args(argv)
    pipeline = source_utils.load(args.pipeline)
    try:
        pipeline.with_options(config_path=args.config).prepare()
    except InvalidConfigError as error:
        error.show()
        return 1
    print(f"{args.config}: valid for {pipeline.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
