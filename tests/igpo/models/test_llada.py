"""The native LLaDA (igpo.models.llada) against what LLaDA's own code computes on a tiny checkpoint in the exact
hub layout (tests/fixtures/hub_checkpoints/llada, see its README in the shared fixtures): weight names, raw
logits, padding, the reference sampler's greedy generations; then the transformers machinery the project
relies on (logits_to_keep, the block KV cache, save/load, gradient checkpointing, bf16, LoRA)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from igpo.distributed import LoRAConfig, apply_lora
from igpo.kv_cache import BlockKVCache, _innermost, cache_argument, check_kv_cache_support
from igpo.models import wrap_model
from igpo.models.llada import LLaDAConfig, LLaDAModelLM, build_tiny_llada, load_llada_tokenizer
from igpo.sampler import SamplerConfig, generate

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "hub_checkpoints" / "llada"
CHECKPOINT = FIXTURE / "checkpoint"
GOLDEN_SETTINGS = json.loads((FIXTURE / "golden.json").read_text())
BLOCK_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "golden.safetensors")


@pytest.fixture(scope="module")
def hub_model() -> LLaDAModelLM:
    return LLaDAModelLM.from_pretrained(CHECKPOINT).eval()


@pytest.fixture(scope="module")
def hub_tokenizer():
    return load_llada_tokenizer(str(CHECKPOINT))


def _padded_batch(golden):
    """The fixture's left-padded rows with masks appended: x [N, T + 8], attention_mask [N, T + 8]."""
    ids, mask = golden["padded_input_ids"], golden["padded_attention_mask"]
    mask_id = GOLDEN_SETTINGS["mask_token_id"]
    x = torch.cat([ids, torch.full((ids.shape[0], 8), mask_id)], 1)
    return x, torch.cat([mask, torch.ones(ids.shape[0], 8, dtype=mask.dtype)], 1)


# ----------------------------------------------------------------------------------------- hub parity


def test_loads_hub_checkpoint_with_its_names_and_reproduces_raw_logits(golden):
    """Every tensor of the hub safetensors is a parameter of the same name and shape (none missing, none
    unexpected, no buffer left to initialise), and the float32 logits are LLaDA's own."""
    model, info = LLaDAModelLM.from_pretrained(CHECKPOINT, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    with safe_open(CHECKPOINT / "model.safetensors", "pt") as f:
        names = f.keys()
        hub_shapes = {name: tuple(f.get_slice(name).get_shape()) for name in names}
    assert {name: tuple(p.shape) for name, p in model.state_dict().items()} == hub_shapes
    assert list(model.buffers()) == []  # RoPE is computed in the forward: nothing for from_pretrained to leave empty
    with torch.no_grad():
        logits = model.eval()(input_ids=golden["input_ids"]).logits  # [N, T, V]
    assert logits.dtype == torch.float32
    diff = (logits - golden["raw_logits"]).abs().max().item()
    assert diff < 1e-4, diff


def test_padded_rows_reproduce_real_tokens_alone(hub_model, golden):
    """Left-padded rows: each real position gives the logits of the row's real tokens run alone (the pads are
    never attended to; RoPE is relative, so the offset of the real tokens does not matter)."""
    real = golden["padded_attention_mask"].bool()
    with torch.no_grad():
        logits = hub_model(input_ids=golden["padded_input_ids"], attention_mask=golden["padded_attention_mask"]).logits
    diff = (logits - golden["padded_raw_logits_of_real_tokens"])[real].abs().max().item()
    assert diff < 1e-4, diff


@pytest.mark.parametrize("name", sorted(GOLDEN_SETTINGS["greedy_generations"]))
def test_project_sampler_reproduces_reference_greedy_generations(hub_model, hub_tokenizer, golden, name):
    """igpo.sampler.generate on the native model gives LLaDA's reference ``generate()`` output token for token.
    The reference ran with the [MASK] logit at -1e9; the project's sampler already sets it to -inf itself."""
    settings = GOLDEN_SETTINGS["greedy_generations"][name]
    assert settings["mask_logit_suppressed"] and settings["remasking"] == "low_confidence"
    lm = wrap_model(hub_model, hub_tokenizer)
    assert lm.tokens.mask_id == GOLDEN_SETTINGS["mask_token_id"] and lm.logits_shift == 0
    config = SamplerConfig(
        gen_length=settings["gen_length"], block_length=settings["block_length"], steps=settings["steps"],
        temperature=settings["temperature"], remasking=settings["remasking"],
    )
    completion = generate(lm, golden["generate_prompt"], config)  # [N, L]
    assert torch.equal(completion, golden[name])


def test_tokenizer_declares_the_mask_token_of_the_config(hub_tokenizer):
    config = LLaDAConfig.from_pretrained(CHECKPOINT)
    assert hub_tokenizer.mask_token_id == config.mask_token_id == GOLDEN_SETTINGS["mask_token_id"]
    assert hub_tokenizer.eos_token_id == config.eos_token_id and hub_tokenizer.pad_token_id == config.pad_token_id
    assert hub_tokenizer.mask_token == "<|mdm_mask|>"


# -------------------------------------------------------------------------------------- forward options


def test_logits_to_keep_positions_equal_the_full_forward(hub_model, golden):
    x, mask = _padded_batch(golden)
    positions = torch.tensor([0, 3, 24, 25, 31])
    with torch.no_grad():
        full = hub_model(input_ids=x, attention_mask=mask).logits  # [N, T, V]
        kept = hub_model(input_ids=x, attention_mask=mask, logits_to_keep=positions).logits  # [N, 5, V]
        last = hub_model(input_ids=x, attention_mask=mask, logits_to_keep=3).logits  # [N, 3, V]
    assert kept.shape == (x.shape[0], len(positions), full.shape[-1])
    torch.testing.assert_close(kept, full[:, positions], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(last, full[:, -3:], atol=1e-6, rtol=1e-6)


def test_window_with_true_positions_against_its_own_keys_equals_the_full_forward(hub_model, golden):
    """A window fed with its true position_ids, its keys completed by the cache with the rest of the sequence's
    keys (from a full forward), is the full forward on that window; past_key_values is the same argument."""
    from transformers.cache_utils import DynamicCache

    x, mask = _padded_batch(golden)
    lo, hi = 20, 28
    with torch.no_grad():
        full_cache = DynamicCache()
        full = hub_model(input_ids=x, attention_mask=mask, cache=full_cache, use_cache=True).logits
        for name in ("cache", "past_key_values"):
            reused = DynamicCache()
            for layer_idx, layer in enumerate(full_cache.layers):  # keys outside the window, then the window's own
                keep = torch.cat([torch.arange(lo), torch.arange(hi, x.shape[1])])
                reused.update(layer.keys[:, :, keep], layer.values[:, :, keep], layer_idx)
            key_mask = torch.cat([mask[:, :lo], mask[:, hi:], mask[:, lo:hi]], 1)
            window = hub_model(
                input_ids=x[:, lo:hi], attention_mask=key_mask, position_ids=torch.arange(lo, hi)[None].expand(3, -1),
                use_cache=True, **{name: reused},
            ).logits
            torch.testing.assert_close(window, full[:, lo:hi], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_block_kv_cache_right_after_refresh_equals_full_forward(hub_model, hub_tokenizer, golden, mode):
    """igpo.kv_cache accepts the model (Cache argument, position_ids, full attention only) and, right after the
    refresh, the cached window gives the full forward's block logits, left padding included."""
    lm = wrap_model(hub_model, hub_tokenizer)
    check_kv_cache_support(lm.model, mode)
    assert cache_argument(lm.model) == "cache"
    assert all(t == "full_attention" for t in getattr(_innermost(lm.model).config, "layer_types", None) or [])
    x, mask = _padded_batch(golden)
    p = golden["padded_input_ids"].shape[1]
    cache = BlockKVCache(lm, mode, mask)
    with torch.no_grad():
        for lo in (p, p + 4):  # a block with a suffix, and the last block
            hi = lo + 4
            full = lm.logits(x, mask, torch.arange(lo, hi))  # [N, block, V]
            assert torch.equal(cache.refresh(x, lo, hi), full)
            torch.testing.assert_close(cache.logits(x, lo, hi), full, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------ transformers plumbing


def test_save_pretrained_round_trip_is_exact_and_drops_auto_map(hub_model, golden, tmp_path):
    assert "auto_map" in json.loads((CHECKPOINT / "config.json").read_text())  # the hub config points at its code
    hub_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert "auto_map" not in saved and saved["model_type"] == "llada"
    assert saved["d_model"] == hub_model.config.d_model and saved["weight_tying"] is False
    reloaded, info = LLaDAModelLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        before = hub_model(input_ids=golden["input_ids"]).logits
        after = reloaded.eval()(input_ids=golden["input_ids"]).logits
    assert torch.equal(before, after)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(golden, use_reentrant):
    """Checkpointed blocks are recomputed in the backward (the first norm runs twice) and give the same grads."""

    def grads(checkpointing: bool) -> tuple[dict[str, torch.Tensor], int]:
        model = LLaDAModelLM.from_pretrained(CHECKPOINT)
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
            assert all(block.gradient_checkpointing for block in model.model.transformer.blocks)
        calls = []
        model.model.transformer.blocks[0].attn_norm.register_forward_hook(lambda *_: calls.append(1))
        model.train()
        logits = model(input_ids=golden["padded_input_ids"], attention_mask=golden["padded_attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), golden["input_ids"].flatten())
        loss.backward()
        return {name: p.grad for name, p in model.named_parameters()}, len(calls)

    (plain, plain_calls), (checkpointed, checkpointed_calls) = grads(False), grads(True)
    assert (plain_calls, checkpointed_calls) == (1, 2)
    assert plain.keys() == checkpointed.keys() and all(g is not None for g in plain.values())
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


def test_bf16_forward_runs_close_to_float32(golden):
    model = LLaDAModelLM.from_pretrained(CHECKPOINT, dtype=torch.bfloat16).eval()
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    with torch.no_grad():
        logits = model(input_ids=golden["padded_input_ids"], attention_mask=golden["padded_attention_mask"]).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    real = golden["padded_attention_mask"].bool()
    diff = (logits.float() - golden["padded_raw_logits_of_real_tokens"])[real].abs().max().item()
    assert diff < 0.1, diff  # bf16 rounding, not a different function


def test_lora_all_linear_targets_exactly_the_block_projections():
    model = LLaDAModelLM.from_pretrained(CHECKPOINT)
    assert model.get_output_embeddings() is model.model.transformer.ff_out
    assert model.get_input_embeddings() is model.model.transformer.wte
    peft_model = apply_lora(model, LoRAConfig(r=4, alpha=8))
    wrapped = {name.removesuffix(".lora_A") for name, _ in peft_model.named_modules() if name.endswith(".lora_A")}
    expected = {
        f"base_model.model.model.transformer.blocks.{i}.{proj}"
        for i in range(model.config.n_layers) for proj in BLOCK_PROJECTIONS
    }
    assert wrapped == expected
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)


# -------------------------------------------------------------------------------------- config and builder


def test_tiny_builder_is_seeded_and_leaves_the_global_rng_alone(tiny_tokenizer):
    state = torch.random.get_rng_state()
    a = build_tiny_llada(tiny_tokenizer, d_model=32, n_heads=4, n_kv_heads=2, mlp_hidden_size=64, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_tiny_llada(tiny_tokenizer, d_model=32, n_heads=4, n_kv_heads=2, mlp_hidden_size=64, seed=3)
    c = build_tiny_llada(tiny_tokenizer, d_model=32, n_heads=4, n_kv_heads=2, mlp_hidden_size=64, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.model.transformer.wte.weight, c.model.transformer.wte.weight)
    assert a.config.vocab_size == a.config.embedding_size == len(tiny_tokenizer)
    assert a.config.mask_token_id == tiny_tokenizer.mask_token_id
    assert a.config.eos_token_id == tiny_tokenizer.eos_token_id
    # A sane random init: unit norms, small finite weights, near-uniform logits over the vocabulary.
    assert torch.equal(a.model.transformer.blocks[0].attn_norm.weight, torch.ones(32))
    ids = torch.tensor([tiny_tokenizer.convert_tokens_to_ids(list("1+2=")) + [tiny_tokenizer.mask_token_id] * 4])
    with torch.no_grad():
        logits = a.eval()(input_ids=ids).logits  # [1, 8, V]
    assert logits.shape == (1, 8, len(tiny_tokenizer)) and torch.isfinite(logits).all()
    assert logits.abs().max() < 10


def test_grouped_kv_heads_equal_full_heads_with_repeated_key_value_weights(tiny_tokenizer):
    """n_kv_heads < n_heads: query head h reads key/value head h // (n_heads / n_kv_heads), i.e. the same model as
    full multi-head attention whose k/v projections repeat each group's rows."""
    grouped = build_tiny_llada(tiny_tokenizer, d_model=32, n_heads=4, n_kv_heads=2, mlp_hidden_size=64, seed=1).eval()
    full = build_tiny_llada(tiny_tokenizer, d_model=32, n_heads=4, n_kv_heads=4, mlp_hidden_size=64).eval()
    state = grouped.state_dict()
    for name, weight in state.items():
        if name.endswith(("k_proj.weight", "v_proj.weight")):  # [H_kv * D, d_model] -> [H * D, d_model]
            state[name] = weight.view(2, 8, 32).repeat_interleave(2, dim=0).reshape(32, 32)
    full.load_state_dict(state)
    ids = torch.tensor([tiny_tokenizer.convert_tokens_to_ids(list("12+34=")) + [tiny_tokenizer.mask_token_id] * 3] * 2)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    with torch.no_grad():
        torch.testing.assert_close(grouped(input_ids=ids, attention_mask=mask).logits,
                                   full(input_ids=ids, attention_mask=mask).logits)


def test_tied_weights_use_the_embedding_as_head_and_round_trip(tiny_tokenizer, tmp_path):
    config = build_tiny_llada(tiny_tokenizer, d_model=32, mlp_hidden_size=64).config
    config.weight_tying = True
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LLaDAModelLM(config).eval()
    assert "model.transformer.ff_out.weight" not in model.state_dict()
    assert model.get_output_embeddings() is model.model.transformer.wte
    ids = torch.tensor([tiny_tokenizer.convert_tokens_to_ids(list("abc"))])
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        logits = model(input_ids=ids).logits
    torch.testing.assert_close(logits, hidden @ model.model.transformer.wte.weight.T)
    model.save_pretrained(tmp_path)
    reloaded, info = LLaDAModelLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(input_ids=ids).logits, logits)


@pytest.mark.parametrize(
    "override",
    [{"block_type": "sequential"}, {"layer_norm_type": "default"}, {"alibi": True}, {"rope": False},
     {"attention_layer_norm": True}, {"activation_type": "swiglu"}, {"block_group_size": 2}],
)
def test_unimplemented_settings_are_refused(override):
    settings = json.loads((CHECKPOINT / "config.json").read_text()) | override
    with pytest.raises(ValueError, match=next(iter(override))):
        LLaDAConfig(**settings)


def test_config_maps_standard_names_onto_hub_keys():
    config = LLaDAConfig.from_pretrained(CHECKPOINT)
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (64, 4, 2)
    assert config.num_key_value_heads == 4 and config.head_dim == 16 and config.intermediate_size == 128
    assert config.tie_word_embeddings is False and config.use_cache is False
    assert not hasattr(config, "auto_map")
