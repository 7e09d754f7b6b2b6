"""Step: condense SFT reasoning traces to the generation budget with a teacher, keeping the final answer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
from zenml import step

from igpo.data.config import RewriteConfig
from igpo.data.rewrite import rewrite_traces as _rewrite
from igpo.data.schema import CANONICAL_SCHEMA
from igpo.models import load_tokenizer
from steps._io import log_step_and_model_metadata


def _secret_api_key(config: RewriteConfig) -> str | None:
    """The teacher's key from the ZenML secret the config names (key 'api_key'), if it names one."""
    name = config.openai.api_key_secret
    if config.backend != "openai" or not name:
        return None
    from zenml.client import Client

    values = Client().get_secret(name).secret_values
    if "api_key" not in values:
        raise KeyError(f"ZenML secret {name!r} has no 'api_key' entry")
    return values["api_key"]


@step
def rewrite_traces(
    sft_table: pd.DataFrame, base_model: Path, config: RewriteConfig
) -> tuple[Annotated[pd.DataFrame, "rewritten_sft_table"], Annotated[pd.DataFrame, "rewrite_failures"]]:
    """Rewritten table (token budget measured with the base model's tokenizer) and the failed rows with reasons."""
    table = pa.Table.from_pandas(sft_table, schema=CANONICAL_SCHEMA, preserve_index=False)
    result = _rewrite(table, config, load_tokenizer(base_model), api_key=_secret_api_key(config))
    log_step_and_model_metadata({"rewrite_counts": result.counts.model_dump()})
    return result.table.to_pandas(), result.failures.to_pandas()
