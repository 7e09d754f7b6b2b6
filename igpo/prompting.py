"""Turning a question into prompt token ids the same way in SFT, RL and evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def format_prompt(tokenizer: Any, question: str, instruction: str = "") -> str:
    """The prompt text: the tokenizer's chat template with a generation prompt, or the bare question."""
    content = f"{instruction}{question}" if instruction else question
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
    return content


def encode_prompts(
    tokenizer: Any, questions: Sequence[str], pad_id: int, instruction: str = "", device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids [N, P] and their attention mask [N, P] (1 = real token)."""
    texts = [format_prompt(tokenizer, q, instruction) for q in questions]
    encoded = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    width = max(len(e) for e in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, width - len(e) :] = torch.tensor(e, dtype=torch.long)
        mask[row, width - len(e) :] = 1
    return ids.to(device), mask.to(device)


def decode_completions(tokenizer: Any, completion_ids: torch.Tensor, stop_ids: Sequence[int]) -> list[str]:
    """Text of each completion up to (not including) its first stop token."""
    texts = []
    for row in completion_ids.tolist():
        end = next((i for i, t in enumerate(row) if t in stop_ids), len(row))
        texts.append(tokenizer.decode(row[:end], skip_special_tokens=False))
    return texts
