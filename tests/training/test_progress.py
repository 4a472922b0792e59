"""Tests for dreamer_tf.training.progress."""

import io
import re

from dreamer_tf.training.progress import ProgressBar, format_duration


class _Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def test_plain_lines_are_throttled_and_readable():
  stream, clock = io.StringIO(), _Clock()
  progress = ProgressBar(1_000_000, initial_step=2_000, stream=stream, interval=60, clock=clock)
  assert not progress.is_tty
  clock.now += 1000  # 10,000 steps in 1000 s: 10 steps/s.
  progress.update(12_000, fps=35.21, last_return=12.04, extra={"loss": 0.123456})
  clock.now += 10
  progress.update(12_100, fps=36.0)  # Within the interval: not printed.
  clock.now += 60
  progress.update(13_000, fps=37.0)
  progress.close()
  output = stream.getvalue()
  assert "\r" not in output and "\x1b" not in output
  lines = output.splitlines()
  assert lines[0] == ("step 12,000/1,000,000 (1.2%) | 35.2 fps | return 12.0 | eta 1d 3h | loss 0.1235")
  assert len(lines) == 2 and lines[1].startswith("step 13,000/1,000,000 (1.3%) | 37.0 fps | return 12.0 |")
  for line in lines:
    assert re.search(r"\| eta \S+", line)


def test_close_prints_the_final_state_once():
  stream, clock = io.StringIO(), _Clock()
  progress = ProgressBar(100, stream=stream, interval=60, clock=clock)
  progress.update(10)
  clock.now += 5
  progress.update(100, fps=20.0)
  progress.close()
  progress.close()
  lines = stream.getvalue().splitlines()
  assert lines[0].startswith("step 10/100 (10.0%) | ? fps | eta ")
  assert lines[1] == "step 100/100 (100.0%) | 20.0 fps | eta 0s"
  assert len(lines) == 2


def test_tty_bar_shows_fps_and_return():
  stream = io.StringIO()
  with ProgressBar(1000, initial_step=100, stream=stream, tty=True) as progress:
    progress.update(500, fps=42.0, last_return=3.5)
  output = stream.getvalue()
  assert "500/1.00k" in output and "42.0 fps" in output and "return 3.5" in output


def test_format_duration():
  assert format_duration(7 * 3600 + 45 * 60 + 10) == "7h 45m"
  assert format_duration(185) == "3m 05s"
  assert format_duration(42) == "42s"
  assert format_duration(2 * 86400 + 4 * 3600) == "2d 4h"
  assert format_duration(None) == "?"


def test_eta_after_the_prefill_agrees_with_the_cpu_hint_for_an_xl_run():
  """The trainer's sequence on a CPU: a fast random prefill, a traced first update, then XL updates.

  The paper's defaults (train ratio 512, 16 x 64 per update, one env): an update every 2 agent steps,
  56.6 s each (the XL update of docs/troubleshooting.md), 120 s to trace the first one. The trainer
  restarts the ETA's rate after its first updates (Trainer.run); the CPU hint's estimate is the
  remaining updates times the measured seconds per update (training/cpu_hint.py).
  """
  from dreamer_tf.training import cpu_hint

  total, prefill, ratio, replayed, per_update, trace = 10**8, 1087, 512.0, 16 * 64, 56.6, 120.0
  clock = _Clock()
  restarted = ProgressBar(total, stream=io.StringIO(), clock=clock)
  unrestarted = ProgressBar(total, stream=io.StringIO(), clock=clock)  # The rate since the start: the old ETA.
  timer, step, updates, hint = cpu_hint.UpdateTimer(), 0, 0, None
  while updates < 40:
    step += 1
    clock.now += 0.002 if step <= prefill else 0.05  # A random action, or the policy's forward pass.
    due = cpu_hint.allowed_updates(step - prefill, ratio, replayed) - updates
    if due > 0:
      seconds = due * per_update + (trace if updates == 0 else 0.0)
      clock.now += seconds
      measured = timer.add(due, seconds)
      if measured is not None:
        hint = cpu_hint.remaining_updates(total, prefill, updates + due, ratio, replayed) * measured
      if updates == 0:
        restarted.restart_rate(step)
      updates += due
    restarted.update(step)
    unrestarted.update(step)
  assert hint is not None
  assert abs(restarted.eta_seconds() / hint - 1) < 0.10, (restarted.eta_seconds(), hint)
  assert unrestarted.eta_seconds() < 0.2 * hint  # What the bar said before: the prefill's pace inflated the rate.
