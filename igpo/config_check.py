"""Check a run config (the YAML a pipeline runs with) against each step's config model, before anything runs.

One short line per error, naming the step and the field, with a suggestion for a misspelt key:

    train_grpo.config.rollout: gen_length (30) must be a multiple of block_length (16)
    train_sft.config.learning_rat: unknown key; did you mean 'learning_rate'?
    evaluate_sft.config.benchmarks[0].samples: Input should be greater than or equal to 1

Pure: the YAML as loaded (a dict), the step name -> pydantic config class of the pipeline's steps, and
optionally each step's parameter names, in; a list of messages out (empty = valid). Input values are never
echoed (a key pasted into the wrong field must not reach a terminal or a log); validators name what they
need themselves. The orchestrator-side wiring is ``pipelines/config_check.py``.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError


def check_run_config(
    document: Any,
    models: Mapping[str, type[BaseModel]],
    parameters: Mapping[str, Collection[str]] | None = None,
) -> list[str]:
    """Every error of ``document`` (``steps.<name>.parameters.config`` for each step of ``models``).

    ``parameters`` (step name -> the names the step takes) also rejects unknown keys under
    ``steps.<name>.parameters``. Steps of the YAML that are not in ``models`` are left alone (a config may
    serve several pipelines); a missing section suggests a similarly named one.
    """
    if not isinstance(document, Mapping):
        return [f"the run config must be a mapping of settings, got {type(document).__name__}"]
    steps = document.get("steps") or {}
    if not isinstance(steps, Mapping):
        return [f"steps: must be a mapping of step name -> settings, got {type(steps).__name__}"]
    errors: list[str] = []
    for name, model in models.items():
        allowed = None if parameters is None else parameters.get(name)
        others = [str(s) for s in steps if s not in models]
        errors += _check_step(name, steps.get(name), model, allowed, others)
    return list(dict.fromkeys(errors))


def validation_messages(prefix: str, error: ValidationError, model: type[BaseModel]) -> list[str]:
    """``prefix.path.to.field: message`` for each error of a pydantic validation of ``model``."""
    items = error.errors(include_url=False, include_input=False, include_context=False)
    locs = [tuple(item["loc"]) for item in items]
    messages = []
    for item, loc in zip(items, locs, strict=True):
        if item["type"] == "too_short" and any(other[: len(loc)] == loc and other != loc for other in locs):
            continue  # pydantic counts only the valid items; the invalid ones are reported already
        if item["type"] == "extra_forbidden":
            message = "unknown key" + did_you_mean(str(loc[-1]), field_names(model, loc[:-1]))
        elif item["type"] == "missing":
            message = "missing (required)"
        else:
            message = item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        messages.append(f"{prefix}{format_loc(loc)}: {message}")
    return messages


def did_you_mean(key: str, candidates: Collection[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""`` when none is close."""
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def format_loc(loc: Sequence[str | int]) -> str:
    """``('benchmarks', 0, 'sampler')`` -> ``.benchmarks[0].sampler`` (``""`` for the model itself)."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def field_names(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The field names (and aliases) of the config model found at ``loc`` inside ``model``; [] if none."""
    annotation: Any = model
    for part in loc:
        if isinstance(part, int):
            annotation = _item_type(annotation)
            continue
        inner = _model_in(annotation)
        if inner is None or part not in inner.model_fields:
            return []
        annotation = inner.model_fields[part].annotation
    inner = _model_in(annotation)
    if inner is None:
        return []
    return [*inner.model_fields, *(f.alias for f in inner.model_fields.values() if f.alias)]


def _check_step(
    name: str, section: Any, model: type[BaseModel], allowed: Collection[str] | None, others: list[str]
) -> list[str]:
    if section is not None and not isinstance(section, Mapping):
        return [f"steps.{name}: must be a mapping of step settings, got {type(section).__name__}"]
    params = (section or {}).get("parameters") or {}
    if not isinstance(params, Mapping):
        return [f"steps.{name}.parameters: must be a mapping, got {type(params).__name__}"]
    errors = []
    if allowed is not None:
        errors += [f"{name}.{key}: unknown parameter of step {name}" + did_you_mean(str(key), allowed)
                   for key in params if key not in allowed]
    if "config" not in params:
        if any(e.endswith("did you mean 'config'?") for e in errors):
            return errors
        hint = did_you_mean(name, others) if section is None else did_you_mean("config", [str(k) for k in params])
        return [*errors, f"{name}.config: missing (steps.{name}.parameters.config in the YAML){hint}"]
    try:
        model.model_validate(params["config"])
    except ValidationError as error:
        errors += validation_messages(f"{name}.config", error, model)
    return errors


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class of an annotation (``X``, ``X | None``, ``Annotated[X, ...]``), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            if (inner := _model_in(arg)) is not None:
                return inner
    return None


def _item_type(annotation: Any) -> Any:
    """The element type of a list / tuple annotation (unwrapping ``| None``), or None."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if (item := _item_type(arg)) is not None:
                return item
        return None
    args = typing.get_args(annotation)
    return args[0] if origin in (list, tuple, Sequence, set, frozenset) and args else None
