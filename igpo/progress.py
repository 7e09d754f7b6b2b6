"""Progress of a long loop: a tqdm bar on a terminal, otherwise one plain log line every N steps.

A tqdm bar redraws its line (``\\r``) up to ten times a second. Where stderr is not a terminal every redraw
is kept: ZenML replaces ``sys.stderr.write`` inside a step and stores each write as a log record at ERROR
level, so a 2,000-step SFT run left thousands of bar frames in its step log. ``ProgressReporter`` draws a
bar only on an interactive terminal whose writes nobody captures; otherwise it logs one INFO line every
``every`` steps and a final line through the caller's module logger, so each line is stored once, at INFO.

Modes (the ``progress`` field of the training configs): ``bar`` (always tqdm), ``log`` (always lines),
``off`` (nothing), ``auto`` (bar when ``is_terminal(stream)``, lines otherwise).
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TextIO

from tqdm.auto import tqdm

if TYPE_CHECKING:
    from typing import Self  # 3.11+; only read by type checkers

log = logging.getLogger(__name__)

ProgressMode = Literal["auto", "bar", "log", "off"]


def is_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is an interactive terminal and its ``write`` is still its own method.

    ZenML's step logging swaps ``sys.stderr.write`` for a function that stores every write (even in a
    terminal), so a stream whose ``write`` was replaced counts as captured, not as a terminal.
    """
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return bool(tty) and getattr(stream.write, "__self__", None) is stream


def resolve_mode(mode: ProgressMode, stream: TextIO) -> Literal["bar", "log", "off"]:
    """The concrete mode: ``auto`` becomes ``bar`` on a terminal and ``log`` elsewhere."""
    if mode == "auto":
        return "bar" if is_terminal(stream) else "log"
    return mode


def as_mode(progress: bool | ProgressMode) -> ProgressMode:
    """A ``progress``/``show_progress`` flag as a mode: True is ``auto``, False is ``off``; a mode stays."""
    if isinstance(progress, bool):
        return "auto" if progress else "off"
    return progress


def every_fraction(total: int, lines: int = 10) -> int:
    """The ``every`` that gives about ``lines`` lines over ``total`` steps (for loops without a config field)."""
    return max(1, -(-total // lines))


class ProgressReporter:
    """Counts the steps of a loop and reports them as a tqdm bar or as log lines (see the module docstring).

    A line is logged each time the step count crosses a multiple of ``every`` before ``total`` (counted
    from 0, so a resumed run logs at the same steps), and a final one by ``close``: ``ceil(total / every)``
    lines for a whole run. Each line has the step, the fields of the latest ``update``, the rate (of the
    steps of this call, not those before ``initial``) and the ETA. Use it as a context manager or call
    ``close``; after an exception the bar is closed and no final line is logged.
    """

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        mode: ProgressMode = "auto",
        every: int = 1,
        initial: int = 0,
        unit: str = "step",
        logger: logging.Logger | None = None,
        stream: TextIO | None = None,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.total, self.desc, self.every, self.unit = total, desc, every, unit
        self.stream = stream if stream is not None else sys.stderr
        self.mode = resolve_mode(mode, self.stream)
        self.logger = logger if logger is not None else log
        self.done = self._initial = initial
        self._fields: dict[str, str] = {}
        self._began = time.perf_counter()
        self._closed = False
        self._bar = None
        if self.mode == "bar":
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=f" {unit}", file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1, **fields: float | str) -> None:
        """Count ``n`` more steps; ``fields`` (e.g. ``loss=0.41``) are shown until the next update sets them."""
        before = self.done
        self.done += n
        self._fields.update({name: _format(value) for name, value in fields.items()})
        if self._bar is not None:
            if fields:
                self._bar.set_postfix(self._fields, refresh=False)
            self._bar.update(n)
        elif self.mode == "log" and self.done // self.every > before // self.every and self.done < self.total:
            self.logger.info("%s", self.line())  # the last step is reported by close()

    def line(self, final: bool = False) -> str:
        """The text of a progress line: ``sft 100/2000 (5%) | loss=0.41 | 3.2 step/s | elapsed 00:31 | ETA 09:52``."""
        elapsed = time.perf_counter() - self._began
        steps = self.done - self._initial
        rate = steps / elapsed if elapsed > 0 else 0.0
        percent = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        head = f"{self.desc} {'finished at ' if final else ''}{self.done}/{self.total}{percent}"
        parts = [head]
        if self._fields:
            parts.append(" ".join(f"{name}={value}" for name, value in self._fields.items()))
        if steps > 0 and rate > 0:
            parts.append(f"{_number(rate)} {self.unit}/s" if rate >= 1 else f"{_number(1 / rate)} s/{self.unit}")
        parts.append(f"elapsed {tqdm.format_interval(elapsed)}")
        if not final and steps > 0 and rate > 0:
            parts.append(f"ETA {tqdm.format_interval(max(self.total - self.done, 0) / rate)}")
        return " | ".join(parts)

    def close(self) -> None:
        """Close the bar, or log the final line; a second call does nothing."""
        self._finish(final_line=True)

    def _finish(self, final_line: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log" and final_line:
            self.logger.info("%s", self.line(final=True))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._finish(final_line=exc_type is None)


def _format(value: float | str) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _number(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"
