"""Reinforcement learning for masked diffusion LMs: IGPO, GRPO and dynamic sampling in one loop
(``igpo.rl.trainer.train_rl``)."""

from igpo.rl.config import RLConfig
from igpo.rl.metrics import RLStepMetrics
from igpo.rl.trainer import RLResult, train_rl

__all__ = ["RLConfig", "RLResult", "RLStepMetrics", "train_rl"]
