"""Length-aligned SFT: the token budget, LoRA, checkpoints and exact resume."""

from __future__ import annotations

import pytest
import torch

from igpo.checkpoint import CheckpointConfig, latest_checkpoint
from igpo.distributed import LoRAConfig, is_peft
from igpo.models import ModelConfig, load_model, wrap_model
from igpo.models.tiny import TinyModelConfig, build_tiny_model
from igpo.sft import SFTConfig, collate, encode_pairs, train_sft

QUESTIONS = ["red", "blue", "green", "cyan", "pink", "gold"]
ANSWERS = ["apple 1", "sky 22", "grass 333", "sea 4444", "rose 5", "sun 66"]


def _lm(tokenizer):
    model = build_tiny_model(tokenizer, TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8, intermediate_size=64))
    return wrap_model(model.eval(), tokenizer)


def _params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def test_budget_drops_or_truncates_and_counts(tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    responses = ["short", "exactly7", "much too long for the budget"]
    dropped = encode_pairs(tiny_tokenizer, eos, ["q"] * 3, responses, SFTConfig(max_response_tokens=9))
    assert (dropped.dropped, dropped.truncated, len(dropped.response_ids)) == (1, 0, 2)
    truncated = encode_pairs(tiny_tokenizer, eos, ["q"] * 3, responses, SFTConfig(max_response_tokens=9, over_budget="truncate"))
    assert (truncated.dropped, truncated.truncated) == (0, 1)
    assert [len(r) for r in truncated.response_ids] == [6, 9, 9] and truncated.response_ids[2][-1] == eos
    with pytest.raises(ValueError, match="budget"):
        encode_pairs(tiny_tokenizer, eos, ["q"], ["far too long"], SFTConfig(max_response_tokens=3))


def test_collate_aligns_responses_and_pads_with_eos(tiny_tokenizer):
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    pairs = encode_pairs(tiny_tokenizer, eos, ["a", "bbbb"], ["x", "yyy"], SFTConfig())
    ids, response_mask, attention_mask = collate(pairs, [0, 1], eos, pad, pad_response_to=6)
    p = max(len(x) for x in pairs.prompt_ids)
    assert ids.shape == (2, p + 6) and response_mask[:, p:].all() and not response_mask[:, :p].any()
    assert ids[0, 0] == pad and ids[0, p : p + 2].tolist() == pairs.response_ids[0] and (ids[0, p + 2 :] == eos).all()
    # the left padding is not attended to, as in sampling and RL log-probs; everything else is
    pads = p - len(pairs.prompt_ids[0])
    assert attention_mask[0, :pads].eq(0).all() and attention_mask[0, pads:].eq(1).all() and attention_mask[1].eq(1).all()


def test_sft_loss_of_a_padded_row_equals_the_row_alone(tiny_tokenizer):
    """With the attention mask, a left-padded row's SFT loss is the loss of the same row without padding (eps
    near 1 masks every response token, so both see the same noise whatever the batch width)."""
    from igpo.diffusion import sft_loss

    lm = _lm(tiny_tokenizer)
    eos, pad = tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id
    pairs = encode_pairs(tiny_tokenizer, eos, ["a", "bbbbbbb"], ["x+1", "yyy"], SFTConfig())
    ids, response_mask, attention_mask = collate(pairs, [0, 1], eos, pad, pad_response_to=6)
    alone_ids, alone_response, alone_attention = collate(pairs, [0], eos, pad, pad_response_to=6)
    assert not attention_mask[0].all() and alone_attention.all()
    with torch.no_grad():
        padded = sft_loss(lm, ids[:1], response_mask[:1], torch.Generator().manual_seed(0), 1 - 1e-7, attention_mask[:1])
        alone = sft_loss(lm, alone_ids, alone_response, torch.Generator().manual_seed(0), 1 - 1e-7, alone_attention)
        ignored = sft_loss(lm, ids[:1], response_mask[:1], torch.Generator().manual_seed(0), 1 - 1e-7)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ignored, alone, atol=1e-5)


class Crash(Exception):
    pass


@pytest.mark.parametrize("lora", [None, LoRAConfig(r=4, alpha=8)])
def test_interrupted_sft_resumes_to_the_same_parameters(tiny_tokenizer, tmp_path, lora):
    config = SFTConfig(
        steps=5, batch_size=4, micro_batch_size=2, learning_rate=5e-3, warmup_steps=2, lora=lora,
        checkpoint=CheckpointConfig(every_steps=2, keep_last=1),
    )
    full = _lm(tiny_tokenizer)
    expected = train_sft(full, QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path / "a")

    def crash_at_4(step, metrics):
        if step == 4:
            raise Crash

    with pytest.raises(Crash):
        train_sft(_lm(tiny_tokenizer), QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path / "b", on_step=crash_at_4)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["step-00000004"]  # keep_last = 1
    (tmp_path / "b" / "step-00000004").rename(tmp_path / "b" / ".tmp-step-00000004")  # as if step 4 crashed mid-write
    assert latest_checkpoint(tmp_path / "b") is None
    (tmp_path / "b" / ".tmp-step-00000004").rename(tmp_path / "b" / "step-00000004")
    resumed = _lm(tiny_tokenizer)
    result = train_sft(resumed, QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path / "b")
    assert result.resumed_from == 4 and result.losses == expected.losses[4:]
    a, b = _params(full.model), _params(resumed.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lora_sft_checkpoints_the_adapter_and_merges_at_the_end(tiny_tokenizer, tmp_path):
    lm = _lm(tiny_tokenizer)
    base = _params(lm.model)
    lora = LoRAConfig(r=4, alpha=8, merge_on_save=False)
    config = SFTConfig(steps=3, batch_size=4, learning_rate=1e-2, lora=lora, checkpoint=CheckpointConfig(every_steps=3))
    train_sft(lm, QUESTIONS, ANSWERS, config, progress=False, checkpoint_dir=tmp_path / "ckpt")
    assert is_peft(lm.model)
    model_dir = tmp_path / "ckpt" / "step-00000003" / "model"
    assert (model_dir / "adapter_model.safetensors").is_file() and not (model_dir / "model.safetensors").exists()
    frozen = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in lm.model.named_parameters() if not p.requires_grad}
    assert all(torch.equal(frozen[n], base[n]) for n in base)  # the base weights never move
    ids = torch.randint(10, 90, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        peft_logits = lm.logits(ids)
    # merge_on_save (the default): the same run ends with a plain model, saved as one.
    merged_lm = _lm(tiny_tokenizer)
    config = config.model_copy(update={"lora": LoRAConfig(r=4, alpha=8), "checkpoint": CheckpointConfig()})
    train_sft(merged_lm, QUESTIONS, ANSWERS, config, progress=False, output_dir=tmp_path / "merged")
    assert not is_peft(merged_lm.model)
    reloaded = load_model(ModelConfig(name_or_path=str(tmp_path / "merged")))
    assert not any("lora" in n for n, _ in reloaded.model.named_parameters())
    with torch.no_grad():
        assert torch.allclose(reloaded.logits(ids), peft_logits, atol=1e-5)


def test_sft_output_dir_and_metrics(tiny_tokenizer, tmp_path):
    lm = _lm(tiny_tokenizer)
    seen = []
    config = SFTConfig(steps=2, batch_size=4, learning_rate=1e-3)
    train_sft(lm, QUESTIONS, ANSWERS, config, progress=False, output_dir=tmp_path / "out", on_step=lambda s, m: seen.append(m))
    assert [m.step for m in seen] == [1, 2] and all(m.tokens > 0 and m.grad_norm > 0 and m.learning_rate == 1e-3 for m in seen)
    reloaded = load_model(ModelConfig(name_or_path=str(tmp_path / "out")))
    trained = dict(lm.model.named_parameters())
    assert all(torch.equal(p, trained[n]) for n, p in reloaded.model.named_parameters())
