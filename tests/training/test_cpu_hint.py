"""The CPU hint: seconds per update, the run's estimate and the flag for a smaller model."""

import pytest

from dreamer_tf.config import load_config
from dreamer_tf.training import cpu_hint


def test_remaining_updates_of_the_paper_defaults():
  # 1e8 steps, training from step 1024, ratio 512 replayed steps per step, 16 x 64 per update.
  assert cpu_hint.allowed_updates(10**8 - 1024, 512.0, 16 * 64) == 49_999_488
  assert cpu_hint.remaining_updates(10**8, 1024, 10, 512.0, 16 * 64) == 49_999_478
  # The debug preset: ratio 32, 4 x 16 per update.
  assert cpu_hint.remaining_updates(100, 66, 4, 32.0, 4 * 16) == 13
  assert cpu_hint.remaining_updates(100, 66, 20, 32.0, 4 * 16) == 0
  assert cpu_hint.allowed_updates(-5, 32.0, 64) == 0


@pytest.mark.parametrize(
  "env, presets, overrides, size",
  [
    ("atari_pong", [], [], "xl"),
    ("atari_pong", ["s"], [], "s"),
    ("atari_pong", ["m"], [], "m"),
    ("dmcproprio_cartpole_balance", [], [], "s"),  # The DMC presets use the S size.
    ("atari_pong", ["debug"], [], "debug"),
    ("atari_pong", ["debug", "xs"], [], "xs"),
    ("atari_pong", [], ["model.deter=300"], None),
  ],
)
def test_model_size_names_the_preset(env, presets, overrides, size):
  assert cpu_hint.model_size(load_config(env, presets, overrides).model) == size


def test_smaller_size_flag():
  assert (
    cpu_hint.smaller_size_flag("xl") == "pick a smaller size with --configs=s (or --configs=debug for a smoke test)"
  )
  assert cpu_hint.smaller_size_flag(None).startswith("pick a smaller size with --configs=s ")
  assert "--configs=xs " in cpu_hint.smaller_size_flag("s")
  assert cpu_hint.smaller_size_flag("xs") == "for a smoke test use --configs=debug"
  assert cpu_hint.smaller_size_flag("debug") == "debug is the smallest preset"


def test_hint_line_for_the_paper_default():
  line = cpu_hint.hint_line("xl", 56.6, 49_999_478, 10**8)
  assert line == (
    "No GPU or TPU found: one update of the xl model takes 56.6s on this CPU; the 49,999,478 updates left until "
    "run.steps=100,000,000 would take about 90 years; pick a smaller size with --configs=s "
    "(or --configs=debug for a smoke test)"
  )
  assert "this model takes 0.5s" in cpu_hint.hint_line(None, 0.5, 7200, 10**6)
  assert "would take about 1h 00m;" in cpu_hint.hint_line(None, 0.5, 7200, 10**6)


def test_update_timer_skips_the_traced_first_call_and_reports_once():
  timer = cpu_hint.UpdateTimer(measure_updates=3)
  assert timer.add(1, 30.0) is None  # Traces the train step.
  assert timer.add(1, 1.0) is None
  assert timer.add(1, 2.0) is None
  assert timer.add(2, 3.0) == pytest.approx(6.0 / 4)
  assert timer.done
  assert timer.add(1, 1.0) is None
