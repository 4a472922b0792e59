"""The replay datasets run without tf.data's autotuner (dreamer_tf/replay/dataset_options.py)."""

import numpy as np
import tensorflow as tf

from dreamer_tf.replay import SequenceReplayBuffer
from dreamer_tf.replay.dataset_options import fixed_pipeline


def test_the_pipeline_options_turn_the_autotuner_off_and_free_the_order():
  dataset = fixed_pipeline(tf.data.Dataset.range(4).prefetch(2))
  options = dataset.options()
  assert options.autotune.enabled is False and options.deterministic is False
  assert list(dataset.as_numpy_iterator()) == [0, 1, 2, 3]  # The elements themselves are unchanged.
  assert tf.data.Dataset.range(4).options().autotune.enabled is not False  # tf.data's own default: on.


def test_the_local_replay_dataset_has_no_autotuner():
  spec = {"obs": {"vector": tf.TensorSpec([3], tf.float32)}, "reward": tf.TensorSpec([], tf.float32)}
  replay = SequenceReplayBuffer(spec, batch_size=1, capacity=100)
  for t in range(10):
    replay.add_batch({"obs": {"vector": np.full((1, 3), t, np.float32)}, "reward": np.ones(1, np.float32)})
  dataset = replay.as_dataset(sample_batch_size=2, num_steps=4)
  assert dataset.options().autotune.enabled is False
  batch = next(iter(dataset))
  assert batch["obs"]["vector"].shape == (2, 4, 3)
