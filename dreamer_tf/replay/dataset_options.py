"""The tf.data options of the replay datasets (local and Reverb)."""

from __future__ import annotations

import tensorflow as tf


def fixed_pipeline(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """``dataset`` with tf.data's autotuning off and element order free.

  The replay pipelines fix their own parallelism and prefetch depth (no ``tf.data.AUTOTUNE``), so
  the autotuner has nothing to tune, but it still runs a model thread per iterator that sleeps
  between optimisation rounds, each twice as long as the last, up to a minute. Destroying the
  iterator waits for that thread to wake: a training run that had finished stayed alive for up to
  a minute before exiting (25-59 s in 7 of 24 parity runs of docs/parity.md: each run folder's
  ``command.txt`` mtime plus ``wall_seconds`` against its ``stdout.log`` mtime; found with gdb:
  ``~RootDataset::Iterator`` waiting on ``Model::OptimizeLoop``). Without the autotuner there is no
  such thread.

  Args:
    dataset: A replay dataset.

  Returns:
    The dataset with ``autotune.enabled = False`` and ``deterministic = False`` (sampled windows
    have no order to keep).
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  options.deterministic = False
  return dataset.with_options(options)
