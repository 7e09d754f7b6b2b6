"""Step: make this run's ZenML Model version the production version if it beats the current one."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages

from igpo.promotion import PromotionConfig, PromotionDecision, decide_promotion, scores_by_benchmark


@step(enable_cache=False)
def promote_model(scores: pd.DataFrame) -> Annotated[PromotionDecision, "promotion"]:
    """Compare ``scores`` with the production version's under the rule in the run config's
    ``extra.promotion`` (``PromotionConfig``); promote and record the decision on the model version."""
    context = get_step_context()
    config = PromotionConfig.model_validate(context.pipeline_run.config.extra.get("promotion", {}))
    candidate = scores_by_benchmark(scores.to_dict("records"))
    version = context.model_version
    if version is None:
        raise RuntimeError("promote_model needs a ZenML Model in the run config (model: name: ...)")
    try:
        production = Client().get_model_version(version.model.id, ModelStages.PRODUCTION)
    except KeyError:
        production = None
    previous = None if production is None else dict(production.run_metadata.get("promotion", {}).get("scores") or {})
    decision = decide_promotion(candidate, previous, config)
    log_metadata({"promotion": {**decision.model_dump(), "scores": candidate}}, infer_model=True)
    if decision.promote:
        version.set_stage(ModelStages.PRODUCTION, force=True)
    return decision
