"""A one-line start-up hint on machines without a GPU or TPU: what the chosen model size costs here.

The defaults are the paper's (arXiv 2301.04104v1): the XL model (Table B.1) trained at a train
ratio of 512 replayed steps per agent step for 1e8 steps. On a CPU one update of that model takes
seconds, so the default run would take years. After the first updates the training loop logs,
once per start::

  No GPU or TPU found: one update of the xl model takes 56.6s on this CPU; the 49,999,478 updates
  left until run.steps=100,000,000 would take about 90 years; pick a smaller size with
  --configs=s (or --configs=debug for a smoke test)

Nothing else changes: the defaults stay the paper's.
"""

from __future__ import annotations

import yaml

from dreamer_tf import config as config_lib
from dreamer_tf.training.progress import format_duration

SIZES = ("xs", "s", "m", "l", "xl")  # Model sizes of Table B.1, smallest first.
_YEAR = 365.25 * 86400


def allowed_updates(steps_since_start: int, train_ratio: float, replayed_per_update: int) -> int:
  """Updates the train ratio allows after ``steps_since_start`` agent steps of training.

  The train ratio is replayed steps (``batch_size * batch_length`` per update) per agent step.
  """
  return int(max(0, steps_since_start) * train_ratio / replayed_per_update)


def remaining_updates(
  total_steps: int, train_start_step: int, updates_since_start: int, train_ratio: float, replayed_per_update: int
) -> int:
  """Updates still to run until ``total_steps`` agent steps, at the train ratio."""
  return max(0, allowed_updates(total_steps - train_start_step, train_ratio, replayed_per_update) - updates_since_start)


def accelerator_present() -> bool:
  """Whether TensorFlow sees a GPU or a TPU."""
  import tensorflow as tf

  return bool(tf.config.list_physical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def model_size(model) -> str | None:
  """The preset (``debug`` or a size of :data:`SIZES`) whose model block ``model`` matches; None if none."""
  for name in ("debug", *SIZES):
    path = config_lib.CONFIG_DIR / f"{name}.yaml"
    preset = (yaml.safe_load(path.read_text()) or {}).get("model", {}) if path.exists() else {}
    if preset and all(model.get(key) == value for key, value in preset.items()):
      return name
  return None


def smaller_size_flag(size: str | None) -> str:
  """The advice naming the flag that picks a smaller model than ``size``."""
  if size == "debug":
    return "debug is the smallest preset"
  if size == "xs":
    return "for a smoke test use --configs=debug"
  smaller = "xs" if size == "s" else "s"
  return f"pick a smaller size with --configs={smaller} (or --configs=debug for a smoke test)"


def format_long_duration(seconds: float) -> str:
  """Like :func:`format_duration`, in years from one year on."""
  if seconds >= _YEAR:
    return f"{seconds / _YEAR:,.0f} years"
  return format_duration(seconds)


def hint_line(size: str | None, seconds_per_update: float, remaining: int, total_steps: int) -> str:
  """The hint for a model of preset ``size`` measured at ``seconds_per_update`` with ``remaining`` updates left."""
  model = f"the {size} model" if size else "this model"
  return (
    f"No GPU or TPU found: one update of {model} takes {seconds_per_update:.3g}s on this CPU; the {remaining:,} "
    f"updates left until run.steps={total_steps:,} would take about "
    f"{format_long_duration(remaining * seconds_per_update)}; {smaller_size_flag(size)}"
  )


class UpdateTimer:
  """Measures the seconds per update after the first call, which includes tracing the train step.

  Args:
    measure_updates: Updates to time (after the first call's) before :meth:`add` reports.
  """

  def __init__(self, measure_updates: int = 3):
    self._measure = measure_updates
    self._calls = 0
    self._updates = 0
    self._seconds = 0.0
    self.done = False

  def add(self, updates: int, seconds: float) -> float | None:
    """Records ``updates`` that took ``seconds``; returns the seconds per update once, when measured."""
    self._calls += 1
    if self.done or self._calls == 1:
      return None
    self._updates += updates
    self._seconds += seconds
    if self._updates < self._measure:
      return None
    self.done = True
    return self._seconds / self._updates
