"""Progress reporting: a tqdm bar only on a real terminal, otherwise a few plain INFO lines (igpo.progress)."""

from __future__ import annotations

import io
import logging

import pandas as pd
import pytest
from pydantic import ValidationError

from igpo.evaluate import BenchmarkConfig, EvalConfig, evaluate_model
from igpo.progress import ProgressReporter, as_mode, is_terminal, resolve_mode
from igpo.rl import RLConfig, train_rl
from igpo.sampler import SamplerConfig
from igpo.sft import SFTConfig, train_sft

LOGGER = "igpo.test_progress"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _messages(caplog, name: str = LOGGER) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno == logging.INFO]


def _run(total: int, every: int, mode: str = "auto", stream=None, initial: int = 0) -> None:
    with ProgressReporter(total, "train", mode=mode, every=every, initial=initial, stream=stream,
                          logger=logging.getLogger(LOGGER)) as reporter:
        for step in range(initial, total):
            reporter.update(loss=1.0 / (step + 1), reward=0.5, all_wrong=0.25)


@pytest.mark.parametrize(("total", "every"), [(10, 3), (9, 3), (5, 1), (4, 10)])
def test_without_a_terminal_logs_one_line_every_n_steps_and_a_final_one(caplog, total, every):
    stream = io.StringIO()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _run(total, every, stream=stream)
    lines = _messages(caplog)
    assert stream.getvalue() == ""  # no bar frames
    assert len(lines) == -(-total // every)  # ceil: the line of the last step is the final one
    assert [line.split()[1] for line in lines[:-1]] == [f"{k * every}/{total}" for k in range(1, len(lines))]
    assert lines[-1].startswith(f"train finished at {total}/{total}") and "ETA" not in lines[-1]
    for line in lines:
        assert "loss=" in line and "reward=0.5" in line and "all_wrong=0.25" in line and "\r" not in line
    for line in lines[:-1]:
        assert "ETA" in line and ("step/s" in line or "s/step" in line)


def test_a_resumed_run_logs_at_the_same_steps(caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _run(10, 3, initial=4, stream=io.StringIO())
    assert [line.split()[1] for line in _messages(caplog)[:-1]] == ["6/10", "9/10"]


def test_a_terminal_gets_a_bar_and_no_log_lines(caplog):
    stream = Terminal()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _run(5, 1, stream=stream)
    assert _messages(caplog) == []
    assert "\r" in stream.getvalue() and "5/5" in stream.getvalue() and "loss=" in stream.getvalue()


def test_a_captured_terminal_is_not_a_terminal():
    # ZenML's step logging replaces sys.stderr.write on the stream object; a bar there would be stored.
    stream = Terminal()
    assert is_terminal(stream) and resolve_mode("auto", stream) == "bar"
    original = stream.write
    stream.write = lambda text: original(text)
    assert not is_terminal(stream) and resolve_mode("auto", stream) == "log"
    assert resolve_mode("bar", io.StringIO()) == "bar" and not is_terminal(io.StringIO())


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()])
def test_off_reports_nothing(caplog, stream):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _run(5, 1, mode="off", stream=stream)
    assert _messages(caplog) == [] and stream.getvalue() == ""


def test_log_mode_on_a_terminal_and_no_final_line_after_an_error(caplog):
    stream = Terminal()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        _run(4, 2, mode="log", stream=stream)
        assert len(_messages(caplog)) == 2 and stream.getvalue() == ""
        caplog.clear()
        reporter = ProgressReporter(4, "train", mode="log", every=2, logger=logging.getLogger(LOGGER))
        with pytest.raises(RuntimeError), reporter:
            reporter.update(2)
            raise RuntimeError("boom")
    assert len(_messages(caplog)) == 1 and "finished" not in _messages(caplog)[0]


def test_flags_and_config_fields():
    assert (as_mode(True), as_mode(False), as_mode("log")) == ("auto", "off", "log")
    assert (SFTConfig().progress, SFTConfig().log_every_steps) == ("auto", 100)
    assert (RLConfig().progress, RLConfig().log_every_steps) == ("auto", 10)
    with pytest.raises(ValidationError, match="log_every_steps"):
        SFTConfig(log_every_steps=0)
    with pytest.raises(ValidationError, match="progress"):
        RLConfig(progress="verbose")
    with pytest.raises(ValueError, match="every"):
        ProgressReporter(3, "x", every=0)


QUESTIONS = ["red", "blue", "green", "cyan"]
ANSWERS = ["apple 1", "sky 22", "grass 333", "sea 4444"]


def test_a_short_sft_run_logs_a_few_plain_lines(tiny_lm, caplog, capsys):
    config = SFTConfig(steps=7, batch_size=2, log_every_steps=3)  # progress "auto"; stderr is captured, not a tty
    with caplog.at_level(logging.INFO, logger="igpo.sft"):
        train_sft(tiny_lm, QUESTIONS, ANSWERS, config)
    lines = [m for m in _messages(caplog, "igpo.sft") if m.startswith("sft ")]
    assert len(lines) == 3 and all("loss=" in line and "\r" not in line for line in lines)
    assert lines[0].startswith("sft 3/7") and lines[-1].startswith("sft finished at 7/7")
    err = capsys.readouterr().err
    assert "\r" not in err and "sft:" not in err  # no tqdm frames on stderr


def test_a_short_rl_run_logs_reward_and_all_wrong_fraction(tiny_lm, caplog, capsys):
    examples = [{"question": f"{i}+{i}?", "answer": str(2 * i)} for i in range(4)]
    config = RLConfig(
        algorithm="grpo", steps=2, batch_size=2, group_size=2, mu=1, beta=0.0, log_every_steps=1,
        rollout=SamplerConfig(gen_length=8, block_length=8, steps=4, temperature=1.0),
    )
    with caplog.at_level(logging.INFO, logger="igpo.rl.trainer"):
        train_rl(tiny_lm, examples, config, correctness_fn=lambda completions, **_: [0.0] * len(completions))
    lines = [m for m in _messages(caplog, "igpo.rl.trainer") if m.startswith("grpo ")]
    assert len(lines) == 2 and lines[-1].startswith("grpo finished at 2/2")
    assert all("loss=" in line and "reward=" in line and "all_wrong=1" in line for line in lines)
    assert "\r" not in capsys.readouterr().err


def test_evaluation_keeps_its_boolean_flag(tiny_lm, caplog, capsys):
    table = pd.DataFrame({"question": QUESTIONS, "answer": ["1", "2", "3", "4"]})
    sampler = SamplerConfig(gen_length=8, block_length=8, steps=4, temperature=0.0)
    config = EvalConfig(benchmarks=(BenchmarkConfig(name="toy", sampler=sampler),), batch_size=2)
    with caplog.at_level(logging.INFO, logger="igpo.evaluate"):
        evaluate_model(tiny_lm, {"toy": table}, config, "tiny", progress=False)
        assert not [m for m in _messages(caplog, "igpo.evaluate") if m.startswith("eval toy")]
        evaluate_model(tiny_lm, {"toy": table}, config, "tiny")
    lines = [m for m in _messages(caplog, "igpo.evaluate") if m.startswith("eval toy")]
    assert [line.split()[2] for line in lines] == ["2/4", "finished"] and "\r" not in capsys.readouterr().err
