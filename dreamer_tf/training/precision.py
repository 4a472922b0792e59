"""``run.precision`` -> the Keras mixed-precision policy of a run."""

from __future__ import annotations

import tensorflow as tf


def resolve_precision(precision: str, strategy: str = "default") -> str:
  """``run.precision`` for this machine.

  ``auto`` (the current generation's default, as its ``jax.compute_dtype: bfloat16``) is
  ``mixed_bfloat16`` on a GPU or TPU and ``float32`` on a CPU; other values are kept.
  """
  if precision != "auto":
    return precision
  if strategy == "tpu" or tf.config.list_physical_devices("GPU"):
    return "mixed_bfloat16"
  return "float32"


def set_precision(precision: str, strategy: str = "default") -> str:
  """Sets the Keras mixed-precision policy (float32, mixed_float16, mixed_bfloat16 or auto, see
  :func:`resolve_precision`); returns the policy's name."""
  precision = resolve_precision(precision, strategy)
  tf.keras.mixed_precision.set_global_policy(precision)
  return precision
