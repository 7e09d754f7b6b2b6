"""The fast sampler modes (Fast-dLLM): the block-wise KV cache against the full forward, the cases where the
fast modes must equal the exact sampler, threshold decoding on a model whose confidences are known by hand,
forward counts, and validation. The tiny model is untrained: equalities hold for any weights."""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import pytest
import torch

from igpo.evaluate import BenchmarkConfig
from igpo.kv_cache import BlockKVCache, _ReusedLayer, cache_argument, check_kv_cache_support
from igpo.models import DiffusionLM, wrap_model
from igpo.models.dream import build_tiny_dream
from igpo.models.tiny import TinyModelConfig, build_tiny_model
from igpo.prompting import encode_prompts
from igpo.sampler import SamplerConfig, generate

MODES = ["prefix", "dual"]


def _lm(tokenizer, layers: int = 2, sharpness: float = 0.0, shift: int = 0) -> DiffusionLM:
    """A tiny untrained model; ``sharpness`` scales the final norm so that its predictions are confident
    (an untrained model is near-uniform, and threshold decoding then commits one token per iteration)."""
    # Gemma-3: these tests reach into its modules (final norm, k/v projections); the native families run the
    # fast sampler in tests/igpo/models/.
    config = TinyModelConfig(architecture="gemma3", num_layers=layers, hidden_size=32, head_dim=8, intermediate_size=64)
    model = build_tiny_model(tokenizer, config).eval()
    with torch.no_grad():
        model.model.norm.weight.fill_(sharpness)  # Gemma RMSNorm scales by (1 + weight)
    return wrap_model(model, tokenizer, logits_shift=shift)


def _padded(lm, texts=("1+2=", "a much longer prompt", "x")):
    ids, mask = encode_prompts(lm.tokenizer, list(texts), lm.tokens.pad_id)
    assert not mask.all(), "the test needs left padding"
    return ids, mask


def _hints(n: int, length: int, tokenizer, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hint_mask = torch.rand(n, length, generator=g) < 0.3
    digits = torch.tensor(tokenizer.convert_tokens_to_ids(list("0123456789")))
    hint_ids = digits[torch.randint(0, 10, (n, length), generator=g)]
    return hint_ids, hint_mask


class ForwardLengths:
    """Records the input length of every call of the HF model (P+L: a full forward; less: a cached one)."""

    def __init__(self, lm: DiffusionLM, monkeypatch):
        self.lengths: list[int] = []
        inner = lm.model.forward

        @functools.wraps(inner)  # keeps the signature the cache-support check reads
        def counted(*args, **kwargs):
            self.lengths.append(kwargs["input_ids"].shape[1])
            return inner(*args, **kwargs)

        monkeypatch.setattr(lm.model, "forward", counted)


# ------------------------------------------------------------------------------------------ cached forward


def _model_under_test(name: str, tokenizer) -> DiffusionLM:
    """Gemma-3 as it is or with Dream's shift forced on, and the two native families (Dream shifted by itself)."""
    if name == "llada":
        return wrap_model(build_tiny_model(tokenizer, TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8,
                                                                       intermediate_size=64)).eval(), tokenizer)
    if name == "dream":
        model = build_tiny_dream(tokenizer, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                                 num_kv_heads=2, max_position_embeddings=256, rope_theta=10_000.0)
        return wrap_model(model.eval(), tokenizer)
    return _lm(tokenizer, shift=1 if name == "gemma3-shifted" else 0)


@pytest.mark.parametrize("model", ["gemma3", "gemma3-shifted", "llada", "dream"])
@pytest.mark.parametrize("mode", MODES)
def test_cached_forward_equals_full_forward_at_block_start(tiny_tokenizer, mode, model):
    """Right after the refresh nothing is stale: the window against the cache gives the full forward's block
    logits, with left-padded prompts, hints in the suffix, every block (the last one has no suffix), and shifted
    models (Dream, Gemma with the shift forced) whose window starts one position before the block."""
    lm = _model_under_test(model, tiny_tokenizer)
    ids, mask = _padded(lm)
    n, p = ids.shape
    length, block = 12, 4
    hint_ids, hint_mask = _hints(n, length, tiny_tokenizer)
    x = torch.cat([ids, torch.where(hint_mask, hint_ids, lm.tokens.mask_id)], 1)  # [N, P+L]
    attention_mask = torch.cat([mask, torch.ones(n, length, dtype=torch.long)], 1)
    cache = BlockKVCache(lm, mode, attention_mask)
    with torch.no_grad():
        for k in range(length // block):
            lo, hi = p + k * block, p + (k + 1) * block
            full = lm.logits(x, attention_mask, torch.arange(lo, hi))  # [N, block, V]
            assert torch.equal(cache.refresh(x, lo, hi), full)  # the refresh is the full forward itself
            torch.testing.assert_close(cache.logits(x, lo, hi), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_cached_forward_is_a_full_forward_with_keys_frozen_outside_the_window(tiny_tokenizer, mode):
    """What the cache computes, rebuilt without any cache: a full forward of the current sequence in which every
    layer's key/value projections outside the window are replaced by their values at the block start (forward
    hooks). Key norm and RoPE act per token, so freezing the projections freezes the cached keys."""
    lm = _lm(tiny_tokenizer, layers=3)
    ids, mask = _padded(lm)
    n, p = ids.shape
    hint_ids, hint_mask = _hints(n, 12, tiny_tokenizer)
    x = torch.cat([ids, torch.where(hint_mask, hint_ids, lm.tokens.mask_id)], 1)
    attention_mask = torch.cat([mask, torch.ones(n, 12, dtype=torch.long)], 1)
    lo, hi = p + 4, p + 8  # the middle block: a prefix and a suffix
    window = torch.zeros(x.shape[1], dtype=torch.bool)
    window[lo : hi if mode == "dual" else None] = True
    projections = [
        getattr(layer.self_attn, name) for layer in lm.model.model.layers for name in ("k_proj", "v_proj")
    ]
    at_block_start: dict[int, torch.Tensor] = {}
    cache = BlockKVCache(lm, mode, attention_mask)
    with torch.no_grad():
        hooks = [
            m.register_forward_hook(lambda m, i, out, j=j: at_block_start.__setitem__(j, out))
            for j, m in enumerate(projections)
        ]
        cache.refresh(x, lo, hi)
        for h in hooks:
            h.remove()
        x[:, lo : lo + 2] = torch.tensor(tiny_tokenizer.convert_tokens_to_ids(["7", "+"]))  # two commits
        hooks = [
            m.register_forward_hook(
                lambda m, i, out, j=j: torch.where(window[None, :, None], out, at_block_start[j])
            )
            for j, m in enumerate(projections)
        ]
        reference = lm.logits(x, attention_mask, torch.arange(lo, hi))
        for h in hooks:
            h.remove()
        cached = cache.logits(x, lo, hi)
        fresh = lm.logits(x, attention_mask, torch.arange(lo, hi))
    torch.testing.assert_close(cached, reference, atol=1e-5, rtol=1e-5)
    assert (cached - fresh).abs().max() > 1e-3  # and the frozen keys do matter


@pytest.mark.parametrize("mode", MODES)
def test_cache_is_exact_for_one_layer_and_stale_for_two(tiny_tokenizer, mode):
    """After tokens of the block are committed, a one-layer model's cached logits still equal the full
    forward's (its keys of a token depend on that token and its position only, and the cached prefix and
    suffix do not change within a block); a two-layer model's do not (the approximation is real)."""
    for layers, exact in ((1, True), (2, False)):
        lm = _lm(tiny_tokenizer, layers=layers)
        ids, mask = _padded(lm)
        n, p = ids.shape
        x = torch.cat([ids, torch.full((n, 8), lm.tokens.mask_id)], 1)
        attention_mask = torch.cat([mask, torch.ones(n, 8, dtype=torch.long)], 1)
        cache = BlockKVCache(lm, mode, attention_mask)
        lo, hi = p, p + 4
        with torch.no_grad():
            cache.refresh(x, lo, hi)
            x[:, lo : lo + 2] = torch.tensor(tiny_tokenizer.convert_tokens_to_ids(["7", "+"]))  # two commits
            full = lm.logits(x, attention_mask, torch.arange(lo, hi))
            cached = cache.logits(x, lo, hi)
        if exact:
            torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
        else:
            assert (cached - full).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------ exactness


@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
@pytest.mark.parametrize("mode", MODES)
def test_one_iteration_per_block_makes_the_cache_exact(tiny_tokenizer, mode, cfg_scale):
    """With one iteration per block every forward is a block-start refresh, i.e. the exact full forward: the
    cached sampler is bit-identical to the exact one (sampling at T > 0, padding, hints, guidance)."""
    lm = _lm(tiny_tokenizer)
    ids, mask = _padded(lm)
    hint_ids, hint_mask = _hints(ids.shape[0], 16, tiny_tokenizer)
    exact = SamplerConfig(gen_length=16, block_length=4, steps=4, temperature=0.8, cfg_scale=cfg_scale)
    runs = []
    for config in (exact, exact.model_copy(update={"cache": mode})):
        g = torch.Generator().manual_seed(3)
        runs.append(generate(lm, ids, config, g, prompt_mask=mask, hint_ids=hint_ids, hint_mask=hint_mask))
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
@pytest.mark.parametrize("mode", MODES)
def test_one_layer_model_cached_sampler_equals_exact(tiny_tokenizer, mode, cfg_scale):
    """Several iterations per block on a one-layer model, where the cache is exact: same completions and same
    per-iteration commits as the exact sampler (greedy, padding, hints, guidance)."""
    lm = _lm(tiny_tokenizer, layers=1)
    ids, mask = _padded(lm)
    hint_ids, hint_mask = _hints(ids.shape[0], 16, tiny_tokenizer)
    exact = SamplerConfig(gen_length=16, block_length=8, steps=8, cfg_scale=cfg_scale)
    outs, traces = [], []
    for config in (exact, exact.model_copy(update={"cache": mode})):
        trace: list[torch.Tensor] = []
        outs.append(
            generate(lm, ids, config, prompt_mask=mask, hint_ids=hint_ids, hint_mask=hint_mask, trace=trace)
        )
        traces.append(torch.stack(trace))
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(traces[0], traces[1])


def test_threshold_one_equals_exact_sampler_with_one_token_per_step(tiny_tokenizer):
    """No confidence exceeds 1.0, so threshold 1.0 commits exactly the most confident mask per iteration: the
    exact sampler with steps = L (one commit per iteration), bit for bit, hints and padding included."""
    lm = _lm(tiny_tokenizer, sharpness=40.0)  # confident: lower thresholds commit several tokens at once
    ids, mask = _padded(lm)
    hint_ids, hint_mask = _hints(ids.shape[0], 16, tiny_tokenizer)
    exact = SamplerConfig(gen_length=16, block_length=8, steps=16)
    kwargs = {"prompt_mask": mask, "hint_ids": hint_ids, "hint_mask": hint_mask}
    fast = generate(lm, ids, exact.model_copy(update={"threshold": 1.0, "steps": 2}), **kwargs)
    assert torch.equal(fast, generate(lm, ids, exact, **kwargs))


# ------------------------------------------------------------------------------------------ threshold decoding


class KnownConfidence(torch.nn.Module):
    """A stand-in model whose confidences are known by hand: completion position j predicts ``targets[j]`` with
    odds ``base_odds[j] * 4**c`` against the rest of the vocabulary, where c counts the completion's
    non-mask tokens (committed or hinted). The sampler excludes [MASK], leaving V - 2 competitors at logit 0."""

    def __init__(
        self, vocab: int, mask_id: int, prompt_length: int, targets: list[int], base_probs: list[float]
    ):
        super().__init__()
        self.vocab, self.mask_id, self.p = vocab, mask_id, prompt_length
        self.targets = torch.tensor(targets)
        self.base_odds = torch.tensor([q / (1 - q) for q in base_probs], dtype=torch.float64)
        self.config = SimpleNamespace(model_type="known")

    def forward(self, input_ids, attention_mask=None):
        n, t = input_ids.shape
        context = (input_ids[:, self.p :] != self.mask_id).sum(1, keepdim=True)  # [N, 1]
        odds = self.base_odds[None] * 4.0**context  # [N, L]
        logits = torch.zeros(n, t, self.vocab)
        target_logits = torch.log(odds * (self.vocab - 2)).float()  # p = odds / (1 + odds)
        logits[:, self.p :].scatter_(2, self.targets.expand(n, -1)[..., None], target_logits[..., None])
        return SimpleNamespace(logits=logits)


def _known_lm(tokenizer, prompt_length: int) -> DiffusionLM:
    lm = _lm(tokenizer)
    targets = tokenizer.convert_tokens_to_ids(list("wxyz"))
    model = KnownConfidence(len(tokenizer), lm.tokens.mask_id, prompt_length, targets, [0.9, 0.3, 0.6, 0.2])
    return DiffusionLM(model=model, tokenizer=tokenizer, tokens=lm.tokens)


def test_threshold_commits_exactly_the_positions_above_it(tiny_tokenizer):
    """Hand-computed traces (base probabilities 0.9, 0.3, 0.6, 0.2; odds x4 per non-mask completion token).
    Row 0, threshold 0.55: iteration 1 commits {0, 2} (0.9, 0.6); then odds x16 make 0.87 and 0.8: {1, 3}.
    Row 1, position 1 hinted: odds start x4 (0.97, 0.86, 0.5): {0, 2}; then x64 gives 0.94: {3}."""
    prompts = torch.tensor([tiny_tokenizer.convert_tokens_to_ids(list("ab"))] * 2)
    lm = _known_lm(tiny_tokenizer, prompt_length=2)
    hint_mask = torch.tensor([[False] * 4, [False, True, False, False]])
    hint_ids = torch.full((2, 4), tiny_tokenizer.convert_tokens_to_ids("5"))
    trace: list[torch.Tensor] = []
    config = SamplerConfig(gen_length=4, block_length=4, steps=4, threshold=0.55)
    out = generate(lm, prompts, config, hint_ids=hint_ids, hint_mask=hint_mask, trace=trace)
    assert [t.int().tolist() for t in trace] == [[[1, 0, 1, 0], [1, 0, 1, 0]], [[0, 1, 0, 1], [0, 0, 0, 1]]]
    assert tiny_tokenizer.decode(out[0]) == "wxyz" and tiny_tokenizer.decode(out[1]) == "w5yz"


@pytest.mark.parametrize("threshold", [0.95, 1.0])
def test_high_threshold_commits_one_token_per_iteration(tiny_tokenizer, threshold):
    """Nothing reaches 0.95 here before it is the last mask, so the forced most-confident commit is the only one:
    0.9 (position 0); then x4: 0.86 (2); then x16: 0.87 (1); then 0.94 (3) - the exact sampler's order."""
    prompts = torch.tensor([tiny_tokenizer.convert_tokens_to_ids(list("ab"))])
    lm = _known_lm(tiny_tokenizer, prompt_length=2)
    trace: list[torch.Tensor] = []
    generate(
        lm, prompts, SamplerConfig(gen_length=4, block_length=4, steps=2, threshold=threshold), trace=trace
    )
    assert [t[0].nonzero().flatten().tolist() for t in trace] == [[0], [2], [1], [3]]
    exact: list[torch.Tensor] = []
    generate(lm, prompts, SamplerConfig(gen_length=4, block_length=4, steps=4), trace=exact)
    assert torch.equal(torch.stack(trace), torch.stack(exact))


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_threshold_invariants_on_a_confident_model(tiny_tokenizer, cache):
    """Replaying every iteration with the exact forward: each commits every mask of its block above the
    threshold and nothing else (the most confident one if none is), at least one per row with masks left;
    hints are never touched, no mask is left, and no block takes more iterations than it has masks."""
    lm = _lm(tiny_tokenizer, sharpness=40.0)
    ids, mask = _padded(lm)
    n, p = ids.shape
    length, block, threshold = 16, 8, 0.9
    hint_ids, hint_mask = _hints(n, length, tiny_tokenizer, seed=1)
    config = SamplerConfig(gen_length=length, block_length=block, steps=2, threshold=threshold, cache=cache)
    trace: list[torch.Tensor] = []
    out = generate(lm, ids, config, prompt_mask=mask, hint_ids=hint_ids, hint_mask=hint_mask, trace=trace)
    assert torch.equal(out[hint_mask], hint_ids[hint_mask])
    assert not (out == lm.tokens.mask_id).any()
    commits = torch.stack(trace)  # [iterations, N, L]
    assert not (commits & hint_mask).any() and torch.equal(commits.any(0), ~hint_mask)
    assert (commits.sum(2) > 1).any(), "the model is not confident enough to test parallel commits"
    attention_mask = torch.cat([mask, torch.ones(n, length, dtype=torch.long)], 1)
    x = torch.cat([ids, torch.where(hint_mask, hint_ids, lm.tokens.mask_id)], 1)
    iterations_per_block = [0] * (length // block)
    for step in commits:
        k = int(step.any(0).nonzero()[0]) // block  # the block this iteration worked on
        iterations_per_block[k] += 1
        lo, hi = p + k * block, p + (k + 1) * block
        masked = x[:, lo:hi] == lm.tokens.mask_id
        if cache == "none":  # the replay is exact only without the cache; with it, the counts must still hold
            with torch.no_grad():
                logits = lm.logits(x, attention_mask, torch.arange(lo, hi)).float()
            logits[..., lm.tokens.mask_id] = -math.inf
            confidence = torch.softmax(logits, -1).max(-1).values.masked_fill(~masked, -1.0)
            expected = confidence > threshold
            forced = ~expected.any(1) & masked.any(1)
            expected[forced, confidence[forced].argmax(1)] = True
            assert torch.equal(step[:, lo - p : hi - p], expected)
        assert torch.equal(step[:, lo - p : hi - p].any(1), masked.any(1))  # >= 1 per row with masks
        x[:, p:] = torch.where(step, out, x[:, p:])
    for k in range(length // block):
        assert 1 <= iterations_per_block[k] <= int((~hint_mask[:, k * block : (k + 1) * block]).sum(1).max())


# ------------------------------------------------------------------------------------------ forward counts


@pytest.mark.parametrize("mode", ["none", *MODES])
def test_forward_counts_and_window_lengths(tiny_tokenizer, mode, monkeypatch):
    """Exact: every iteration runs all P+L positions. Prefix: one full forward per block, then the block and
    everything after it. Dual: one full forward per block, then the block alone. A block of hints only
    (block 0 here) runs no forward at all."""
    lm = _lm(tiny_tokenizer)
    ids, mask = _padded(lm)
    n, p = ids.shape
    length, block, steps_per_block = 12, 4, 4
    hint_mask = torch.zeros(n, length, dtype=torch.bool)
    hint_mask[:, :block] = True
    hint_ids = torch.full((n, length), tiny_tokenizer.convert_tokens_to_ids("0"))
    counter = ForwardLengths(lm, monkeypatch)
    config = SamplerConfig(gen_length=length, block_length=block, steps=3 * steps_per_block, cache=mode)
    generate(lm, ids, config, prompt_mask=mask, hint_ids=hint_ids, hint_mask=hint_mask)
    total = p + length
    expected = []
    for k in (1, 2):  # block 0 is all hints
        window = {"none": total, "prefix": total - (p + k * block), "dual": block}[mode]
        expected += [total] + [window] * (steps_per_block - 1)
    assert counter.lengths == expected


@pytest.mark.parametrize("mode", MODES)
def test_cached_steps_read_the_cache(tiny_tokenizer, mode, monkeypatch):
    """Every cached step hands the model its reused keys/values and every attention layer reads them, under
    whichever name the installed transformers takes the cache: a model that ignored the cache (as transformers
    5.24 does with ``past_key_values=``, renamed ``cache=``) would silently attend to the window alone."""
    reads: list[int] = []
    update = _ReusedLayer.update

    def counted(self, *args, **kwargs):
        reads.append(self.keys.shape[-2])
        return update(self, *args, **kwargs)

    monkeypatch.setattr(_ReusedLayer, "update", counted)
    lm = _lm(tiny_tokenizer)
    ids, mask = _padded(lm)
    generate(lm, ids, SamplerConfig(gen_length=8, block_length=4, steps=8, cache=mode), prompt_mask=mask)
    cached_steps = 2 * (4 - 1)  # 2 blocks of 4 iterations: a refresh, then 3 cached steps each
    assert len(reads) == lm.model.config.num_hidden_layers * cached_steps
    assert min(reads) > 0


def test_cache_argument_follows_the_forward_signature(tiny_tokenizer):
    """Found by signature, not by version: ``past_key_values`` up to transformers 5.23, ``cache`` from 5.24."""

    class Old(torch.nn.Module):
        def forward(self, input_ids=None, position_ids=None, past_key_values=None, use_cache=None): ...

    class New(torch.nn.Module):
        def forward(self, input_ids=None, position_ids=None, cache=None, use_cache=None): ...

    assert cache_argument(Old()) == "past_key_values"
    assert cache_argument(New()) == "cache"
    assert cache_argument(torch.nn.Linear(1, 1)) is None
    assert cache_argument(_lm(tiny_tokenizer).model) is not None  # the installed transformers' own models


def test_threshold_needs_fewer_forwards_on_a_confident_model(tiny_tokenizer, monkeypatch):
    lm = _lm(tiny_tokenizer, sharpness=40.0)
    ids, mask = _padded(lm)
    counter = ForwardLengths(lm, monkeypatch)
    exact = SamplerConfig(gen_length=16, block_length=8, steps=16)
    generate(lm, ids, exact, prompt_mask=mask)
    exact_forwards = len(counter.lengths)
    counter.lengths.clear()
    generate(lm, ids, exact.model_copy(update={"threshold": 0.9, "cache": "dual"}), prompt_mask=mask)
    assert exact_forwards == 16
    assert len(counter.lengths) < exact_forwards
    assert counter.lengths.count(ids.shape[1] + 16) == 2  # one full forward per block, the rest cached


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"threshold": 0.9, "remasking": "random"}, "threshold"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"cache": "full"}, "cache"),
    ],
)
def test_invalid_fast_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplerConfig(gen_length=8, block_length=4, steps=4, **kwargs)


def test_fast_settings_reach_evaluation_configs():
    bench = BenchmarkConfig.model_validate({"name": "gsm8k", "sampler": {"cache": "dual", "threshold": 0.9}})
    assert bench.sampler.cache == "dual" and bench.sampler.threshold == 0.9
    assert SamplerConfig().cache == "none" and SamplerConfig().threshold is None


def test_model_without_cache_support_is_a_clear_error(tiny_tokenizer):
    """LLaDA's original remote code takes no position_ids and builds no transformers Cache: no silent fallback."""
    lm = _known_lm(tiny_tokenizer, prompt_length=2)
    prompts = torch.tensor([tiny_tokenizer.convert_tokens_to_ids(list("ab"))])
    with pytest.raises(NotImplementedError, match=r"KnownConfidence.*position_ids.*cache='none'"):
        generate(lm, prompts, SamplerConfig(gen_length=4, block_length=4, steps=4, cache="prefix"))
    sliding = _lm(tiny_tokenizer).model
    sliding.config.layer_types = ["sliding_attention", "full_attention"]
    with pytest.raises(NotImplementedError, match="full attention only"):
        check_kv_cache_support(sliding, "dual")


@pytest.mark.parametrize("mode", MODES)
def test_cache_works_through_a_lora_wrapper(tiny_tokenizer, mode):
    """RL rollouts with LoRA run the sampler on a peft model, whose forward takes **kwargs: the support check
    looks through the wrapper, and the output equals the bare model's (fresh adapters are a no-op)."""
    import dataclasses

    from igpo.distributed import LoRAConfig, apply_lora

    lm = _lm(tiny_tokenizer)
    ids, mask = _padded(lm)
    config = SamplerConfig(gen_length=16, block_length=8, steps=8, cache=mode)
    bare = generate(lm, ids, config, prompt_mask=mask)
    wrapped = dataclasses.replace(lm, model=apply_lora(lm.model, LoRAConfig(r=2, alpha=2)))
    assert torch.equal(generate(wrapped, ids, config, prompt_mask=mask), bare)


def test_threshold_decoding_does_not_constrain_steps():
    """`steps` is ignored by threshold decoding, so it is not checked against the blocks; the fixed schedule
    still is."""
    SamplerConfig(gen_length=96, block_length=32, steps=128, threshold=0.9)
    with pytest.raises(ValueError, match="steps"):
        SamplerConfig(gen_length=96, block_length=32, steps=128)
