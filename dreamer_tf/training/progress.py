"""Training progress on the console: a tqdm bar on a terminal, plain log lines otherwise.

On a terminal (``stream.isatty()``) a single-line bar shows steps, percent, fps, the last
episode return and the ETA. Elsewhere (log files, CI, ``nohup``) it prints a plain line at
most every ``interval`` seconds, without carriage returns or ANSI codes::

  step 12,000/1,000,000 (1.2%) | 35.2 fps | return 12.0 | eta 7h 45m
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO


def format_duration(seconds: float | None) -> str:
  """Formats a duration as its two largest units, e.g. ``7h 45m``, ``3m 05s``, ``2d 4h``."""
  if seconds is None or seconds != seconds or seconds == float("inf"):
    return "?"
  seconds = int(round(max(0.0, seconds)))
  days, rest = divmod(seconds, 86400)
  hours, rest = divmod(rest, 3600)
  minutes, secs = divmod(rest, 60)
  if days:
    return f"{days}d {hours}h"
  if hours:
    return f"{hours}h {minutes:02d}m"
  if minutes:
    return f"{minutes}m {secs:02d}s"
  return f"{secs}s"


def _format_value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


class ProgressBar:
  """Shows training progress; call :meth:`update` as often as convenient, then :meth:`close`.

  Example::

    progress = ProgressBar(config.steps, initial_step=restored_step)
    for ...:
      progress.update(step, fps=fps, last_return=last_return, extra={"train/loss": loss})
    progress.close()
  """

  def __init__(
    self,
    total_steps: int,
    initial_step: int = 0,
    *,
    stream: TextIO | None = None,
    interval: float = 30.0,
    tty: bool | None = None,
    clock: Callable[[], float] = time.monotonic,
  ):
    """Creates the display.

    Args:
      total_steps: The step at which training ends.
      initial_step: The step training starts (or resumes) from.
      stream: Where to write; defaults to ``sys.stdout``.
      interval: Minimum seconds between plain log lines (non-terminal output only).
      tty: Forces the terminal (True) or plain-line (False) mode; by default
        ``stream.isatty()``.
      clock: Monotonic time source in seconds.
    """
    self._stream = stream if stream is not None else sys.stdout
    self._total = int(total_steps)
    self._initial = int(initial_step)
    self._interval = float(interval)
    self._clock = clock
    if tty is None:
      isatty = getattr(self._stream, "isatty", None)
      tty = bool(isatty and isatty())
    self._tty = tty
    self._rate_time = clock()  # The ETA's rate counts from here (see restart_rate).
    self._rate_step = self._initial
    self._last_print = None
    self._step = self._initial
    self._fps = None
    self._last_return = None
    self._extra: dict[str, Any] = {}
    self._printed_step = None
    self._closed = False
    self._bar = None
    if self._tty:
      import tqdm

      self._bar = tqdm.tqdm(
        total=self._total,
        initial=self._initial,
        file=self._stream,
        unit="step",
        unit_scale=True,
        dynamic_ncols=True,
        smoothing=0.05,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",  # The ETA is ours: eta_seconds.
      )

  @property
  def is_tty(self) -> bool:
    return self._tty

  def update(
    self,
    step: int,
    fps: float | None = None,
    last_return: float | None = None,
    extra: Mapping[str, Any] | None = None,
  ) -> None:
    """Reports the current step; values left as None keep their last reported value.

    Args:
      step: The current agent step.
      fps: Environment frames (or steps) per second.
      last_return: The return of the last finished episode.
      extra: More ``name: value`` pairs to show at the end of the line.
    """
    if self._closed:
      return
    self._step = int(step)
    if fps is not None:
      self._fps = float(fps)
    if last_return is not None:
      self._last_return = float(last_return)
    if extra is not None:
      self._extra = dict(extra)
    if self._bar is not None:
      self._bar.update(self._step - self._bar.n)
      self._bar.set_postfix_str(self._postfix(), refresh=False)
      return
    now = self._clock()
    if self._last_print is None or now - self._last_print >= self._interval:
      self._print_line(now)

  def close(self) -> None:
    """Finishes the bar, or prints a final line if the last update was not printed."""
    if self._closed:
      return
    self._closed = True
    if self._bar is not None:
      self._bar.close()
    elif self._printed_step != self._step:
      self._print_line(self._clock())

  def __enter__(self) -> ProgressBar:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def restart_rate(self, step: int | None = None) -> None:
    """Measures the ETA's rate from now on, from ``step`` (default: the last reported step).

    The trainer calls it once its first updates are done: the random prefill before them runs
    at many times the pace of training, and the first update traces the train step, so a rate
    that included either would promise the end far too early (or, after the trace, too late).
    """
    self._rate_time = self._clock()
    self._rate_step = self._step if step is None else int(step)

  def eta_seconds(self, now: float | None = None) -> float | None:
    """Seconds to ``total_steps`` at the average rate since construction or :meth:`restart_rate`.

    None while unknown (no step since then).
    """
    now = self._clock() if now is None else now
    done = self._step - self._rate_step
    elapsed = now - self._rate_time
    if done <= 0 or elapsed <= 0:
      return None
    return max(0, self._total - self._step) * elapsed / done

  def line(self, now: float | None = None) -> str:
    """The plain progress line for the current state."""
    percent = 100.0 * self._step / self._total if self._total > 0 else 100.0
    parts = [f"step {self._step:,}/{self._total:,} ({percent:.1f}%)"]
    parts.append(f"{self._fps:.1f} fps" if self._fps is not None else "? fps")
    if self._last_return is not None:
      parts.append(f"return {self._last_return:.1f}")
    parts.append(f"eta {format_duration(self.eta_seconds(now))}")
    parts.extend(f"{name} {_format_value(value)}" for name, value in self._extra.items())
    return " | ".join(parts)

  def _postfix(self) -> str:
    parts = [f"eta {format_duration(self.eta_seconds())}"]
    if self._fps is not None:
      parts.append(f"{self._fps:.1f} fps")
    if self._last_return is not None:
      parts.append(f"return {self._last_return:.1f}")
    parts.extend(f"{name} {_format_value(value)}" for name, value in self._extra.items())
    return ", ".join(parts)  # tqdm puts ", " before the postfix.

  def _print_line(self, now: float) -> None:
    self._last_print = now
    self._printed_step = self._step
    print(self.line(now), file=self._stream, flush=True)
