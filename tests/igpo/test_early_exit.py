"""Early exit: a row whose text is final (a stop token with every position before it committed) leaves the batch.
Texts, ``completion_mask`` and the tokens it keeps are those of the sampler without early exit, in every mode,
at T = 0 and T > 0, with hints, padding and guidance; the forwards it saves are counted. The tiny model is
untrained, so a bias toward the stop tokens (growing with the position) makes rows stop early."""

from __future__ import annotations

import pytest
import torch

from igpo.models import DiffusionLM, wrap_model
from igpo.models.tiny import TinyModelConfig, build_tiny_model
from igpo.prompting import decode_completions, encode_prompts
from igpo.rl.loss import completion_mask
from igpo.sampler import SamplerConfig, SamplerStats, fill_after_stop, finished_rows, generate

QUESTIONS = ["1+2=", "a much longer prompt", "x", "hello there", "7*8", "zz"]
LENGTH = 32


class StopBias:
    """Adds ``slope * max(0, position - start)`` to the eos logit (and 0.8 times that to eot) at every absolute
    position the model predicts, full or cached forward alike, and records (rows, input length) per forward."""

    def __init__(self, monkeypatch, start: int, slope: float):
        self.start, self.slope = start, slope
        self.forwards: list[tuple[int, int]] = []
        original = DiffusionLM.logits

        def biased(lm, input_ids, attention_mask=None, positions=None, **kwargs):
            self.forwards.append(tuple(input_ids.shape))
            out = original(lm, input_ids, attention_mask, positions, **kwargs)  # [N, M, V]
            wanted = positions if positions is not None else torch.arange(input_ids.shape[1])
            position_ids = kwargs.get("position_ids")  # a cached window's true positions
            absolute = wanted if position_ids is None else position_ids[0, wanted]  # [M]
            ramp = (absolute - self.start).clamp_min(0).to(out.dtype) * self.slope  # [M]
            bias = torch.zeros(out.shape[-1], dtype=out.dtype)
            bias[lm.tokens.eos_id], bias[lm.tokens.eot_id] = 1.0, 0.8
            return out + ramp[:, None] * bias

        monkeypatch.setattr(DiffusionLM, "logits", biased)


def _lm(tokenizer) -> DiffusionLM:
    config = TinyModelConfig(num_layers=2, hidden_size=32, head_dim=8, intermediate_size=64)
    return wrap_model(build_tiny_model(tokenizer, config).eval(), tokenizer)


def _inputs(lm, hints: bool, length: int = LENGTH):
    ids, mask = encode_prompts(lm.tokenizer, QUESTIONS, lm.tokens.pad_id)  # [N, P]
    assert not mask.all(), "the test needs left padding"
    if not hints:
        return ids, mask, {}
    g = torch.Generator().manual_seed(0)
    hint_mask = torch.rand(len(QUESTIONS), length, generator=g) < 0.2
    hint_ids = torch.randint(10, 40, (len(QUESTIONS), length), generator=g)  # [N, L] no special tokens
    return ids, mask, {"hint_ids": hint_ids, "hint_mask": hint_mask}


def _run(lm, ids, mask, config, hints=None, seed=5, trace=None):
    stats = SamplerStats()
    out = generate(
        lm, ids, config, torch.Generator().manual_seed(seed), prompt_mask=mask, stats=stats, trace=trace,
        **(hints or {}),
    )
    return out, stats


def _assert_same_text(lm, on, off, hints):
    stop_ids = lm.tokens.stop_ids
    real_on, real_off = completion_mask(on, stop_ids), completion_mask(off, stop_ids)
    assert torch.equal(real_on, real_off)
    assert torch.equal(on[real_on], off[real_off])  # every token up to and including the first stop
    assert decode_completions(lm.tokenizer, on, stop_ids) == decode_completions(lm.tokenizer, off, stop_ids)
    if hints:
        assert torch.equal(on[hints["hint_mask"]], hints["hint_ids"][hints["hint_mask"]])


# ------------------------------------------------------------------------------------------ by hand


def test_finished_rows_by_hand():
    """M = mask, 1/3 = stop ids, h = a hint (already in the row, so it counts as committed)."""
    m = 2
    rows = torch.tensor([
        [5, 6, 1, m, m],  # stop, everything before it committed: finished
        [5, m, 1, m, m],  # a mask before the stop: its text may still change
        [5, 6, 7, 8, 9],  # no mask left, no stop: finished (nothing can change)
        [m, m, m, m, m],
        [4, 4, 4, 3, 1],  # eot counts as a stop
        [7, 7, m, 1, 3],  # the first stop is after a mask, the mask is not yet decided
    ])
    assert finished_rows(rows, torch.tensor([1, 3]), m).tolist() == [True, False, True, False, True, False]


def test_fill_after_stop_uses_the_rows_first_stop_and_keeps_hints():
    rows = torch.tensor([
        [5, 3, 2, 6, 1],  # eot first: the tail becomes eot, a committed 6 and a later eos included
        [5, 6, 1, 2, 9],  # eos first; position 4 is a hint and stays
        [5, 6, 7, 2, 2],  # no stop: unchanged
    ])
    keep = torch.zeros(3, 5, dtype=torch.bool)
    keep[1, 4] = True
    out = fill_after_stop(rows, torch.tensor([1, 3]), keep)
    assert out.tolist() == [[5, 3, 3, 3, 3], [5, 6, 1, 1, 9], [5, 6, 7, 2, 2]]


# ------------------------------------------------------------------------------------------ identity

MODES = {
    "exact": {},
    "prefix": {"cache": "prefix"},
    "dual": {"cache": "dual"},
    "threshold": {"threshold": 0.5},
    "threshold-dual": {"threshold": 0.5, "cache": "dual"},
}


@pytest.mark.parametrize("hinted", [False, True], ids=["plain", "hints"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("mode", list(MODES))
def test_early_exit_keeps_every_text(tiny_tokenizer, monkeypatch, mode, temperature, hinted):
    """Same tokens up to the first stop, same completion_mask, same decoded texts; the early-exit path is taken
    (fewer rows forwarded), the finished tails hold the stop token, and with the cache a row left mid-block."""
    bias = StopBias(monkeypatch, start=0, slope=0.6)
    lm = _lm(tiny_tokenizer)
    ids, mask, hints = _inputs(lm, hinted)
    bias.start = ids.shape[1] + 4
    config = SamplerConfig(gen_length=LENGTH, block_length=8, steps=16, temperature=temperature, **MODES[mode])
    off, stats_off = _run(lm, ids, mask, config.model_copy(update={"early_exit": False}), hints)
    bias.forwards.clear()
    trace: list[torch.Tensor] = []
    on, stats_on = _run(lm, ids, mask, config, hints, trace=trace)
    _assert_same_text(lm, on, off, hints)

    assert stats_on.rows_forwarded < stats_off.rows_forwarded
    keep = hints.get("hint_mask", torch.zeros_like(on, dtype=torch.bool))
    # Every non-hint position is committed exactly once, the filled tails by the iteration that finished the row.
    assert torch.equal(torch.stack(trace).sum(0), (~keep).long())
    stop_ids = torch.tensor(lm.tokens.stop_ids)
    assert torch.equal(on, fill_after_stop(on, stop_ids, keep))  # tails are stop tokens (hints aside)
    assert torch.isin(on, stop_ids).any(1).all()  # every row stopped (the bias is strong enough)
    if "cache" in MODES[mode] and temperature > 0:  # greedy, the rows here stop at the same iteration
        full = ids.shape[1] + LENGTH
        mid_block = [b for a, b in zip(bias.forwards, bias.forwards[1:]) if b[0] < a[0] and b[1] < full]
        assert mid_block, "no row left between two cached steps of a block: cache.select is not exercised"


@pytest.mark.parametrize("mode", ["exact", "prefix", "dual"])
def test_early_exit_keeps_every_text_with_guidance(tiny_tokenizer, monkeypatch, mode):
    """Classifier-free guidance: both branches (and both caches) lose the finished rows together."""
    bias = StopBias(monkeypatch, start=0, slope=0.6)
    lm = _lm(tiny_tokenizer)
    ids, mask, hints = _inputs(lm, True)
    bias.start = ids.shape[1] + 4
    config = SamplerConfig(gen_length=LENGTH, block_length=8, steps=16, temperature=1.0, cfg_scale=1.5, **MODES[mode])
    off, stats_off = _run(lm, ids, mask, config.model_copy(update={"early_exit": False}), hints)
    bias.forwards.clear()
    on, stats_on = _run(lm, ids, mask, config, hints)
    _assert_same_text(lm, on, off, hints)
    assert stats_on.rows_forwarded < stats_off.rows_forwarded
    conditional, unconditional = bias.forwards[0::2], bias.forwards[1::2]
    assert conditional == unconditional  # the pairs of one iteration have the same rows
    assert len({rows for rows, _ in conditional}) > 2  # and rows left at several points


def test_rows_draw_the_same_noise_in_any_batch(tiny_tokenizer, monkeypatch):
    """T > 0, no stop: a row's completion does not depend on which rows share its batch when it keeps its own
    generator (seeded from the caller's), the property that makes early exit exact when sampling."""
    from igpo import sampler

    lm = _lm(tiny_tokenizer)
    ids, mask, hints = _inputs(lm, True, 16)
    seeds: list[int] = []
    make = sampler.row_generators

    def recorded(generator, n, device):
        out = make(generator, n, device)
        seeds.extend(g.initial_seed() for g in out)
        return out

    monkeypatch.setattr(sampler, "row_generators", recorded)
    config = SamplerConfig(gen_length=16, block_length=8, steps=8, temperature=1.0, remasking="random")
    full = generate(lm, ids, config, torch.Generator().manual_seed(1), prompt_mask=mask, **hints)
    assert len(set(seeds)) == len(QUESTIONS)
    rows = [4, 1]  # a sub-batch, in another order, with those rows' own streams
    monkeypatch.setattr(sampler, "row_generators", lambda *_: [torch.Generator().manual_seed(seeds[r]) for r in rows])
    sub = generate(lm, ids[rows], config, prompt_mask=mask[rows], **{k: v[rows] for k, v in hints.items()})
    assert torch.equal(sub, full[rows])


# ------------------------------------------------------------------------------------------ forward counts


def test_fewer_forwards_when_every_row_stops_early(tiny_tokenizer, monkeypatch):
    """Greedy, eos favoured from the third completion position on: every row's first block is final after its
    4 iterations, so early exit runs 4 forwards (all 6 rows) instead of 16; no forward at all after that."""
    bias = StopBias(monkeypatch, start=0, slope=50.0)
    lm = _lm(tiny_tokenizer)
    ids, mask, _ = _inputs(lm, False)
    bias.start = ids.shape[1] + 1
    config = SamplerConfig(gen_length=LENGTH, block_length=8, steps=16)
    off, stats_off = _run(lm, ids, mask, config.model_copy(update={"early_exit": False}))
    on, stats_on = _run(lm, ids, mask, config)
    _assert_same_text(lm, on, off, {})
    assert (stats_off.forwards, stats_off.rows_forwarded) == (16, 16 * len(QUESTIONS))
    assert (stats_on.forwards, stats_on.rows_forwarded) == (4, 4 * len(QUESTIONS))
    assert (on[:, 8:] == lm.tokens.eos_id).all()


@pytest.mark.parametrize("mode", ["exact", "dual", "threshold"])
def test_same_forwards_when_no_row_stops(tiny_tokenizer, monkeypatch, mode):
    """No stop token can be sampled (a large negative bias): early exit changes nothing, forwards included."""
    StopBias(monkeypatch, start=-1000, slope=-1.0)
    lm = _lm(tiny_tokenizer)
    ids, mask, hints = _inputs(lm, True, 16)
    config = SamplerConfig(gen_length=16, block_length=8, steps=8, temperature=1.0, **MODES[mode])
    off, stats_off = _run(lm, ids, mask, config.model_copy(update={"early_exit": False}), hints)
    on, stats_on = _run(lm, ids, mask, config, hints)
    assert not torch.isin(on, torch.tensor(lm.tokens.stop_ids)).any()
    assert torch.equal(on, off)
    assert stats_on == stats_off and stats_on.forwards > 0


# ------------------------------------------------------------------------------------------ RL step


def _contains(word: str):
    """A toy correctness reward. 'e' is sometimes sampled by the untrained model (reward variance for GRPO);
    'see' never is, but the hints from the traces below hold it (all-wrong groups, then IGPO's repairs)."""

    def correctness(completions, **_):
        return [1.0 if word in text else 0.0 for text in completions]

    return correctness


@pytest.mark.parametrize("rollout", [{}, {"cache": "prefix", "threshold": 0.5}], ids=["exact", "prefix-threshold"])
@pytest.mark.parametrize("algorithm", ["igpo", "grpo"])
def test_rl_step_is_identical_with_and_without_early_exit(tiny_tokenizer, monkeypatch, algorithm, rollout):
    """One RL step from the same model: rollouts, rewards, IGPO's inpainting repairs (hints), completion masks,
    the loss and every updated parameter are bit-identical; early exit only forwards fewer rows."""
    from igpo.rl import RLConfig, train_rl

    examples = [
        {"question": q, "answer": "1", "reasoning": f"we see {q}, then the answer is 1"}
        for q in ("1+1?", "a longer question?", "2?", "what is 3+4?")
    ]
    bias = StopBias(monkeypatch, start=0, slope=0.6)
    ids, _ = encode_prompts(tiny_tokenizer, [e["question"] for e in examples], 0)
    bias.start = ids.shape[1] + 3
    sampler = SamplerConfig(gen_length=LENGTH, block_length=8, steps=16, temperature=1.0, **rollout)
    runs = []
    for early_exit in (False, True):
        lm = _lm(tiny_tokenizer)
        config = RLConfig(
            algorithm=algorithm, steps=1, batch_size=2, group_size=4, mu=1, s_min=2, s_max=4, learning_rate=1e-2,
            beta=0.0, weight_decay=0.0, grad_clip=1.0, rollout=sampler.model_copy(update={"early_exit": early_exit}),
        )
        bias.forwards.clear()
        reward = _contains("see" if algorithm == "igpo" else "e")
        metrics = train_rl(lm, examples, config, correctness_fn=reward, progress=False).metrics[0]
        rows = sum(r for r, _ in bias.forwards)
        runs.append((metrics.model_dump(exclude={"seconds"}), dict(lm.model.named_parameters()), rows))
    (metrics_off, params_off, rows_off), (metrics_on, params_on, rows_on) = runs
    assert metrics_on == metrics_off  # loss, rewards, token counts, repairs
    assert metrics_on["loss"] != 0 and metrics_on["zero_advantage_fraction"] < 1
    assert all(torch.equal(params_on[name], params_off[name]) for name in params_off)
    assert rows_on < rows_off
    assert metrics_on["completion_length"] < LENGTH / 2  # rows did stop early
    if algorithm == "igpo":
        assert metrics_on["completions_replaced"] > 0, metrics_on  # hinted completions are trained on


def test_a_row_finished_by_its_hints_runs_no_forward(tiny_tokenizer):
    """A stop among the hints with every position before it hinted: the row is final before the first iteration.
    It never enters a forward, its tail is the stop token (other hints kept), and the trace records that fill."""
    lm = _lm(tiny_tokenizer)
    ids, mask, _ = _inputs(lm, False)
    n, length = ids.shape[0], 16
    hint_mask = torch.zeros(n, length, dtype=torch.bool)
    hint_ids = torch.full((n, length), tiny_tokenizer.convert_tokens_to_ids("7"))
    hint_mask[0, [0, 1, 9]] = True
    hint_ids[0, 1] = lm.tokens.eot_id
    config = SamplerConfig(gen_length=length, block_length=8, steps=8)
    trace: list[torch.Tensor] = []
    out, stats = _run(lm, ids, mask, config, {"hint_ids": hint_ids, "hint_mask": hint_mask}, trace=trace)
    assert stats.rows_forwarded == stats.forwards * (n - 1)
    expected = torch.full((length,), lm.tokens.eot_id)
    expected[[0, 9]] = hint_ids[0, [0, 9]]
    assert torch.equal(out[0], expected)
    assert torch.equal(torch.stack(trace).sum(0), (~hint_mask).long())
    assert trace[0][0].sum() == length - 3  # the fill, recorded with the first entry
