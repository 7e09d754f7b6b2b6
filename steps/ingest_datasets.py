"""Step: read every configured source into canonical tables, quarantine bad rows, decontaminate."""

from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from zenml import step

from igpo.data.config import IngestConfig
from igpo.data.ingest import ingest, training_table
from igpo.data.schema import concat_tables
from steps._io import log_step_and_model_metadata

log = logging.getLogger(__name__)


@step
def ingest_datasets(
    config: IngestConfig,
) -> tuple[
    Annotated[pd.DataFrame, "sft_table"],
    Annotated[pd.DataFrame, "rl_table"],
    Annotated[pd.DataFrame, "eval_table"],
    Annotated[pd.DataFrame, "quarantine"],
]:
    """SFT rows, RL rows (y* traces), benchmark rows (``source`` = benchmark) and quarantined rows with reasons."""
    result = ingest(config)
    sft, rl = training_table(result, config, "sft"), training_table(result, config, "rl")
    evals = concat_tables(result.eval.values())
    quarantine = concat_tables([result.quarantine, result.decontaminated], result.quarantine.schema)
    counts = {name: c.model_dump() for name, c in result.counts.sources.items()}
    log.info("ingest: %s", counts)
    log_step_and_model_metadata({"ingest_counts": counts})
    return sft.to_pandas(), rl.to_pandas(), evals.to_pandas(), quarantine.to_pandas()
