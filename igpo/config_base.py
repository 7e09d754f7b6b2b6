"""The base of every stage config: frozen, unknown keys rejected, every field described.

Invalid configs fail at construction, before any compute, with pydantic's message naming the field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictConfig(BaseModel):
    """Frozen pydantic model that forbids unknown keys (a typo in a YAML is an error, not a no-op)."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
