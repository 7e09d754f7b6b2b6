"""The native Dream classes against the hub-layout fixture (tests/fixtures/hub_checkpoints/dream: a tiny
random checkpoint laid out as Dream-org/Dream-v0-Instruct-7B, with the logits Dream's own code computes on
it): loading, golden logits, padding, logits_to_keep, the KV cache, save/reload, gradient checkpointing,
bf16, RoPE, the fast tokenizer built from the slow tokenizer's files, the tiny builder and LoRA targets."""

from __future__ import annotations

import itertools
import json
import unicodedata
from functools import cache
from pathlib import Path

import pytest
import regex
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from igpo.kv_cache import BlockKVCache, check_kv_cache_support
from igpo.models import wrap_model
from igpo.models.dream import (
    DreamConfig,
    DreamModel,
    build_tiny_dream,
    load_dream_tokenizer,
)
from igpo.tokens import SpecialTokens

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "hub_checkpoints" / "dream"
CHECKPOINT = FIXTURE / "checkpoint"
ATOL = 1e-4


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "golden.safetensors")


@pytest.fixture(scope="module")
def model() -> DreamModel:
    return DreamModel.from_pretrained(CHECKPOINT, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return load_dream_tokenizer(CHECKPOINT)


def _real(mask: torch.Tensor) -> torch.Tensor:
    return mask.bool()[..., None]  # [N, T, 1]: compare logits at real tokens only


# ------------------------------------------------------------------------------------------- loading, logits


def test_from_pretrained_reads_every_hub_weight_and_nothing_else():
    model, info = DreamModel.from_pretrained(CHECKPOINT, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with safe_open(CHECKPOINT / "model.safetensors", "pt") as f:
        assert set(f.keys()) == set(model.state_dict())
    assert isinstance(model.config, DreamConfig) and model.config.model_type == "Dream"
    assert not hasattr(model.config, "auto_map")


def test_raw_logits_equal_dreams_own(model, golden):
    with torch.no_grad():
        logits = model(input_ids=golden["input_ids"]).logits  # [N, T, V], raw: i predicts i+1
    torch.testing.assert_close(logits, golden["raw_logits"], atol=ATOL, rtol=0)


def test_left_padded_rows_compute_what_their_real_tokens_alone_compute(model, golden):
    ids, mask = golden["padded_input_ids"], golden["padded_attention_mask"]
    assert not mask.all()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    expected = golden["padded_raw_logits_of_real_tokens"]
    torch.testing.assert_close(logits * _real(mask), expected * _real(mask), atol=ATOL, rtol=0)
    assert torch.isfinite(logits).all()  # pad queries attend to the real keys: no NaN anywhere


def test_logits_to_keep_selects_positions_before_the_head(model, golden):
    ids = golden["input_ids"]
    with torch.no_grad():
        full = model(input_ids=ids).logits
        kept = model(input_ids=ids, logits_to_keep=torch.tensor([0, 5, 13, 23])).logits
        last = model(input_ids=ids, logits_to_keep=3).logits
    torch.testing.assert_close(kept, full[:, [0, 5, 13, 23]], atol=1e-6, rtol=0)
    torch.testing.assert_close(last, full[:, -3:], atol=1e-6, rtol=0)


def test_unsupported_forward_arguments_fail_instead_of_being_ignored(model, golden):
    ids = golden["input_ids"]
    with torch.no_grad():
        model(input_ids=ids, labels=None, output_attentions=False, return_dict=True)  # what peft passes
        with pytest.raises(TypeError, match="labels"):
            model(input_ids=ids, labels=ids)
        with pytest.raises(TypeError, match="output_hidden_states"):
            model(input_ids=ids, output_hidden_states=True)


# ------------------------------------------------------------------------------------------- KV cache


def test_wrap_model_shifts_dream_and_resolves_its_special_tokens(model, tokenizer):
    lm = wrap_model(model, tokenizer)
    assert lm.logits_shift == 1 and lm.supports_logits_to_keep
    assert lm.tokens.mask_id == model.config.mask_token_id == tokenizer.convert_tokens_to_ids("<|mask|>")
    check_kv_cache_support(model, "dual")


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_block_kv_cache_right_after_refresh_equals_the_full_forward(model, tokenizer, golden, mode):
    """Through DiffusionLM (logits_shift=1: the window starts one position before the block), every block."""
    lm = wrap_model(model, tokenizer)
    x = golden["input_ids"]  # [N, 24]: 12 prompt tokens, then masks and hints
    cache = BlockKVCache(lm, mode, None)
    with torch.no_grad():
        for lo in (12, 16, 20):
            full = lm.logits(x, None, torch.arange(lo, lo + 4))  # [N, block, V]
            assert torch.equal(cache.refresh(x, lo, lo + 4), full)
            torch.testing.assert_close(cache.logits(x, lo, lo + 4), full, atol=1e-5, rtol=0)


def test_block_kv_cache_with_left_padding(model, tokenizer, golden):
    lm = wrap_model(model, tokenizer)
    x, mask = golden["padded_input_ids"], golden["padded_attention_mask"]
    cache = BlockKVCache(lm, "dual", mask)
    with torch.no_grad():
        full = lm.logits(x, mask, torch.arange(16, 20))
        cache.refresh(x, 16, 20)
        torch.testing.assert_close(cache.logits(x, 16, 20), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("window", [(15, 20), (11, 24)])
def test_window_against_reused_keys_with_true_positions_and_key_order_mask(model, golden, window):
    """The cache contract the KV cache relies on, without igpo.kv_cache: a cache pre-filled with the
    keys/values (after RoPE) of the positions outside a window, the window fed with its true positions
    (of the padded sequence, as the full forward counts them) and a padding mask in the key order give the full forward's window
    logits."""
    from transformers import DynamicCache

    x, mask = golden["padded_input_ids"], golden["padded_attention_mask"]
    start, end = window
    with torch.no_grad():
        full_cache = DynamicCache()
        full = model(input_ids=x, attention_mask=mask, cache=full_cache, use_cache=True).logits
        reused = DynamicCache()
        for i, layer in enumerate(full_cache.layers):
            keys, values = layer.keys, layer.values  # [N, Hkv, T, D]
            outside = torch.cat([keys[:, :, :start], keys[:, :, end:]], 2), torch.cat(
                [values[:, :, :start], values[:, :, end:]], 2
            )
            reused.update(*outside, i)
        # [N, T_keys]: the padding mask in the cache's key order (reused keys, then the window's)
        key_mask = torch.cat([mask[:, :start], mask[:, end:], mask[:, start:end]], 1)
        out = model(
            input_ids=x[:, start:end],
            attention_mask=key_mask,
            position_ids=torch.arange(start, end)[None].expand(x.shape[0], -1),
            past_key_values=reused,  # the pre-5.24 keyword still works
            use_cache=True,
        )
    real = _real(mask[:, start:end])
    torch.testing.assert_close(out.logits * real, full[:, start:end] * real, atol=1e-5, rtol=0)
    assert out.cache is reused


# ---------------------------------------------------------------------------------------- save, train, dtypes


def test_save_and_reload_gives_identical_logits_and_no_remote_code_pointer(model, golden, tmp_path):
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "auto_map" not in saved and saved["model_type"] == "Dream"
    reloaded, info = DreamModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        a = model(input_ids=golden["input_ids"]).logits
        b = reloaded.eval()(input_ids=golden["input_ids"]).logits
    assert torch.equal(a, b)


def test_gradient_checkpointing_gives_the_same_gradients(golden):
    x, mask = golden["padded_input_ids"], golden["padded_attention_mask"]

    def grads(checkpointing: bool) -> tuple[dict[str, torch.Tensor], int]:
        model = DreamModel.from_pretrained(CHECKPOINT).train()
        if checkpointing:
            model.activation_checkpointing_enable()
        calls = []  # attention forwards: a checkpointed layer runs its forward again in the backward pass
        for layer in model.model.layers:
            layer.self_attn.register_forward_hook(lambda *_: calls.append(1))
        logits = model(input_ids=x, attention_mask=mask).logits
        (logits.float().logsumexp(-1) * mask).sum().backward()
        return {name: p.grad for name, p in model.named_parameters()}, len(calls)

    (plain, plain_calls), (checkpointed, checkpointed_calls) = grads(False), grads(True)
    assert checkpointed_calls == 2 * plain_calls
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_bf16_forward_runs_and_stays_close_to_float32(model, golden):
    bf16 = DreamModel.from_pretrained(CHECKPOINT, dtype=torch.bfloat16).eval()
    assert bf16.lm_head.weight.dtype == torch.bfloat16
    x, mask = golden["padded_input_ids"], golden["padded_attention_mask"]
    with torch.no_grad():
        low = bf16(input_ids=x, attention_mask=mask).logits
        high = model(input_ids=x, attention_mask=mask).logits
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    assert ((low.float() - high) * _real(mask)).abs().max() < 0.02 * high.abs().max()


def test_rope_frequencies_are_right_after_from_pretrained(model):
    """No inv_freq buffer exists to be left uninitialised: the frequencies come from the config, in float32,
    whatever the parameter dtype."""
    config = model.config
    dim = config.hidden_size // config.num_attention_heads
    expected = 1.0 / (config.rope_parameters["rope_theta"] ** (torch.arange(0, dim, 2).float() / dim))
    for loaded in (model, DreamModel.from_pretrained(CHECKPOINT, dtype=torch.bfloat16)):
        rope = loaded.model.rotary_emb
        assert rope.inv_freq.dtype == torch.float32
        torch.testing.assert_close(rope.inv_freq, expected, atol=0, rtol=0)
        assert not any("inv_freq" in name for name, _ in loaded.named_buffers())


@pytest.mark.parametrize(
    "override, message",
    [
        ({"use_sliding_window": True, "sliding_window": 64}, "use_sliding_window"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "linear"),
        ({"use_mrope": True}, "use_mrope"),
    ],
)
def test_unimplemented_settings_fail_clearly(override, message):
    hub = json.loads((CHECKPOINT / "config.json").read_text())
    with pytest.raises(ValueError, match=message):
        DreamConfig.from_dict({**hub, **override})


# ------------------------------------------------------------------------------------------- tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table (openai/gpt-2 src/encoder.py) the slow tokenizer uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


# The pre-tokenizer regex of transformers 4's slow Qwen2Tokenizer (and of Dream's copy of it).
QWEN2_PRETOKENIZE = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


@cache
def _slow_files(directory: Path = CHECKPOINT) -> tuple[dict, dict, dict]:
    """vocab {token: id}, merge ranks {(a, b): rank}, added tokens {token: id}."""
    vocab = json.loads((directory / "vocab.json").read_text())
    lines = (directory / "merges.txt").read_text().splitlines()
    merges = [tuple(line.split()) for i, line in enumerate(lines) if line and not (i == 0 and line[0] == "#")]
    added = json.loads((directory / "added_tokens.json").read_text())
    return vocab, {m: r for r, m in enumerate(merges)}, added


def _slow_qwen2_encode(text: str, directory: Path = CHECKPOINT) -> list[int]:
    """The slow (pure Python) Qwen2 tokenizer of transformers 4, which Dream's remote DreamTokenizer copies:
    split out the added tokens, NFC, the Qwen2 pre-tokenizer regex, GPT-2 bytes -> characters, then BPE
    merging the lowest-ranked pair first."""
    vocab, ranks, added = _slow_files(directory)
    byte_chars = _bytes_to_unicode()
    ids: list[int] = []
    pieces = regex.split("(" + "|".join(regex.escape(t) for t in added) + ")", text)
    for piece in pieces:
        if piece in added:
            ids.append(added[piece])
            continue
        for word in regex.findall(QWEN2_PRETOKENIZE, unicodedata.normalize("NFC", piece)):
            parts = [byte_chars[b] for b in word.encode("utf-8")]
            while len(parts) > 1:
                best = min(itertools.pairwise(parts), key=lambda pair: ranks.get(pair, float("inf")))
                if best not in ranks:
                    break
                merged, i = [], 0  # every occurrence of the best pair, left to right (GPT-2's bpe())
                while i < len(parts):
                    if tuple(parts[i : i + 2]) == best:
                        merged.append(parts[i] + parts[i + 1])
                        i += 2
                    else:
                        merged.append(parts[i])
                        i += 1
                parts = merged
            ids.extend(vocab[p] for p in parts)
    return ids


SAMPLES = [
    "Hello world",
    "  two spaces, don't STOP; I'M here\n\n\ttab",
    "12+345=357 and 3.14159",
    "héllo wörld — naïve café 😀 汉字",
    "The answer is <|mask|><|mask|> 42<|im_end|><|endoftext|>",
    "<|beginoftext|>x<|im_start|>user\nhi<|im_end|>\n",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_fast_tokenizer_ids_equal_the_slow_qwen2_tokenizers(tokenizer, text):
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == _slow_qwen2_encode(text)
    assert tokenizer(text)["input_ids"] == _slow_qwen2_encode(text)  # no BOS/EOS added (add_bos_token: false)


def test_merges_are_applied_as_the_slow_tokenizer_applies_them(tmp_path):
    """The fixture's merges.txt is empty (a byte-level vocabulary); a copy with a few merges, ranks not in
    vocabulary order, checks that merges.txt is read and applied by rank as the slow tokenizer does."""
    for name in ("vocab.json", "added_tokens.json", "tokenizer_config.json"):
        (tmp_path / name).write_bytes((CHECKPOINT / name).read_bytes())
    vocab = json.loads((CHECKPOINT / "vocab.json").read_text())
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("4", "2"), ("a", "n"), ("an", "s"), ("Ġ", "ans")]
    next_id = max(json.loads((CHECKPOINT / "added_tokens.json").read_text()).values()) + 1
    for a, b in reversed(merges):
        vocab[a + b] = next_id
        next_id += 1
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    tokenizer = load_dream_tokenizer(tmp_path)
    for text in ["the answer is 42 then the ans", "The then<|mask|> 424 theans ans"] + SAMPLES:
        ids = tokenizer(text)["input_ids"]
        assert ids == _slow_qwen2_encode(text, tmp_path)
    assert len(tokenizer("the ans")["input_ids"]) == 3  # 'the' 'Ġans' merged: the merges were applied


def test_fast_tokenizer_gives_offsets_and_the_chat_template(tokenizer):
    text = "Thus the answer is 42."
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = encoded["offset_mapping"]
    assert len(spans) == len(encoded["input_ids"]) and "".join(text[a:b] for a, b in spans) == text
    messages = [{"role": "user", "content": "What is 2+2?"}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    config = json.loads((CHECKPOINT / "tokenizer_config.json").read_text())
    assert tokenizer.chat_template == config["chat_template"]
    assert prompt.endswith("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer(prompt)["input_ids"] == _slow_qwen2_encode(prompt)


def test_special_tokens_resolve_from_the_tokenizer_and_config(tokenizer):
    config = DreamConfig.from_pretrained(CHECKPOINT)
    tokens = SpecialTokens.from_tokenizer(tokenizer, config)
    added = _slow_files()[2]
    assert tokens.mask_id == config.mask_token_id == added["<|mask|>"] == tokenizer.mask_token_id
    assert tokens.eos_id == config.eos_token_id == added["<|endoftext|>"]
    assert tokens.pad_id == config.pad_token_id
    assert tokens.eot_id == added["<|im_end|>"]
    assert tokenizer.bos_token_id == added["<|beginoftext|>"]
    assert all(tokenizer.convert_tokens_to_ids(t) == i for t, i in added.items())


def test_saved_tokenizer_reloads_without_remote_code(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    tokenizer.save_pretrained(tmp_path)
    assert "auto_map" not in json.loads((tmp_path / "tokenizer_config.json").read_text())
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in SAMPLES:
        assert reloaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert reloaded.mask_token_id == tokenizer.mask_token_id


# ------------------------------------------------------------------------------------------- tiny, LoRA, Auto


def test_registered_auto_classes_load_the_hub_layout_without_remote_code():
    from transformers import AutoConfig, AutoModel

    from igpo.models.families import register_native_families

    register_native_families()
    register_native_families()  # idempotent
    assert isinstance(AutoConfig.from_pretrained(CHECKPOINT, trust_remote_code=False), DreamConfig)
    assert isinstance(AutoModel.from_pretrained(CHECKPOINT, trust_remote_code=False), DreamModel)


def test_tiny_builder_is_seeded_and_leaves_the_global_rng_alone(tokenizer):
    state = torch.random.get_rng_state()
    a = build_tiny_dream(tokenizer, hidden_size=32, intermediate_size=64, num_heads=4, num_kv_heads=2, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_tiny_dream(tokenizer, hidden_size=32, intermediate_size=64, num_heads=4, num_kv_heads=2, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.config.vocab_size == len(tokenizer) and a.config.mask_token_id == tokenizer.mask_token_id
    pad = a.config.pad_token_id
    assert a.model.embed_tokens.weight[pad].abs().sum() == 0  # Dream's init: zero padding row
    lm = wrap_model(a.eval(), tokenizer)
    ids = torch.tensor([tokenizer("1+2=")["input_ids"] + [lm.tokens.mask_id] * 4])
    assert lm.logits(ids).shape == (1, ids.shape[1], len(tokenizer))


def test_lora_all_linear_targets_the_seven_projections_of_each_layer_and_not_the_head(model):
    from igpo.distributed import LoRAConfig, apply_lora

    peft_model = apply_lora(DreamModel.from_pretrained(CHECKPOINT), LoRAConfig(r=2, alpha=2))
    base = peft_model.get_base_model()
    adapted = {name for name, module in base.named_modules() if hasattr(module, "lora_A")}
    projections = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    expected = {f"model.layers.{i}.{p}" for i in range(model.config.num_hidden_layers) for p in projections}
    assert adapted == expected
