"""Sampling, eviction, dataset and memory behaviour of SequenceReplayBuffer."""

import threading

import numpy as np
import pytest
import tensorflow as tf
from replay_testlib import check_window, episode_length, fill, make_spec, make_step, window

from dreamer_tf.errors import UserError
from dreamer_tf.replay import SequenceReplayBuffer, step_spec


def make_replay(num_streams=3, capacity=3000, **kwargs):
  kwargs.setdefault("chunk_size", 32)
  kwargs.setdefault("block_size", 8)
  return SequenceReplayBuffer(make_spec(), num_streams, capacity, seed=0, **kwargs)


def test_windows_cross_episode_boundaries_with_is_first_forced():
  replay = make_replay()
  fill(replay, 0, 150)  # Several full (packed) chunks and an open one.
  assert replay.size == 450 and replay.num_frames() == 450
  batch = replay.sample(64, 20)
  assert batch["is_first"][:, 0].all()
  crossings = 0
  for i in range(64):
    stream, t0 = check_window(window(batch, i), 20)
    crossings += int(np.any((t0 + np.arange(1, 20)) % episode_length(stream) == 0))
  assert crossings == 64  # Every window of 20 steps spans an episode start (episodes are 5-9 steps).


def test_compressed_and_raw_stores_sample_identically():
  packed, raw = make_replay(compress=True), make_replay(compress=False)
  fill(packed, 0, 100)
  fill(raw, 0, 100)
  a, b = packed.sample(32, 40), raw.sample(32, 40)
  tf.nest.map_structure(np.testing.assert_array_equal, a, b)
  assert packed.stats()["bytes"] < raw.stats()["bytes"]
  assert raw.stats()["compression_ratio"] <= 1.0 + 1e-9


def test_fifo_eviction_at_capacity():
  replay = make_replay(num_streams=2, capacity=200)
  fill(replay, 0, 330)
  assert replay.size == 200 and replay.stream_length == 100
  starts = []
  for _ in range(200):
    batch = replay.sample(1, 10)
    starts.append(check_window(window(batch, 0), 10)[1])
  assert min(starts) == 230 and max(starts) == 320
  # Memory is freed chunk by chunk: at most one partly evicted chunk beyond the 100 steps per stream.
  assert replay.stats()["chunks"] <= 100 // 32 + 2


def test_sampling_is_uniform_over_streams_and_positions():
  replay = make_replay(num_streams=2, capacity=1000)
  fill(replay, 0, 40)
  length, draws = 8, 16500
  batch = replay.sample(draws, length)
  reward = batch["reward"][:, 0].astype(int)
  counts = np.zeros((2, 40 - length + 1))
  np.add.at(counts, (reward // 1000, reward % 1000), 1)
  expected = draws / counts.size  # 66 windows, 250 draws each.
  assert counts.min() > 0
  chi2 = ((counts - expected) ** 2 / expected).sum()
  assert chi2 < 130, chi2  # 65 degrees of freedom: p < 1e-5 above ~130.


def test_sample_before_enough_data_raises():
  replay = make_replay()
  fill(replay, 0, 5)
  with pytest.raises(ValueError, match="fewer than the sequence length 6"):
    replay.sample(2, 6)


def test_dataset_shapes_dtypes_and_live_data():
  replay = make_replay(num_streams=2)
  spec = make_spec()
  dataset = replay.as_dataset(sample_batch_size=4, num_steps=16)
  for path, expected in [("image", spec["obs"]["image"]), ("vector", spec["obs"]["vector"])]:
    got = dataset.element_spec["obs"][path]
    assert got.dtype == expected.dtype and got.shape.as_list() == [4, 16, *expected.shape.as_list()]
  assert dataset.element_spec["action"].shape.as_list() == [4, 16, 2]
  assert dataset.element_spec["is_first"].dtype == tf.bool
  assert dataset.element_spec["reward"].shape.as_list() == [4, 16]

  # The dataset exists before the data: sampling waits for it, then keeps up with new steps.
  writer = threading.Thread(target=fill, args=(replay, 0, 300))
  writer.start()
  latest = []
  for batch in dataset.take(30):
    batch = tf.nest.map_structure(lambda x: x.numpy(), batch)
    assert batch["obs"]["image"].dtype == np.uint8
    for i in range(4):
      latest.append(check_window(window(batch, i), 16)[1])
  writer.join()
  assert max(latest) > 16

  @tf.function(input_signature=[dataset.element_spec])
  def consume(batch):
    return tf.reduce_sum(tf.cast(batch["obs"]["image"], tf.int32)) + tf.cast(tf.size(batch["reward"]), tf.int32)

  assert consume(next(iter(dataset))).numpy() > 0


def test_dataset_without_time_or_batch_axis_and_get_next():
  replay = make_replay()
  fill(replay, 0, 40)
  single = next(iter(replay.as_dataset(sample_batch_size=5)))
  assert single["obs"]["image"].shape == (5, 16, 16, 3) and single["reward"].shape == (5,)
  items, info = replay.get_next(sample_batch_size=3, num_steps=7)
  assert items["obs"]["vector"].shape == (3, 7, 3) and info.ids.shape == (3,)
  assert bool(tf.reduce_all(items["is_first"][:, 0]))
  everything = replay.gather_all()
  assert everything["reward"].shape == (3, 40)
  np.testing.assert_array_equal(everything["reward"].numpy()[1], 1000 + np.arange(40))
  replay.clear()
  assert replay.size == 0


def test_add_batch_rejects_wrong_steps():
  replay = make_replay(num_streams=2)
  step = make_step(3, 0)
  with pytest.raises(UserError, match="'action' has shape"):
    replay.add_batch(step)
  step = make_step(2, 0)
  del step["reward"]
  with pytest.raises(UserError, match="no 'reward'"):
    replay.add_batch(step)


def test_step_spec_from_environment_specs():
  from tf_agents.specs import array_spec

  obs = {
    "image": array_spec.ArraySpec((64, 64, 3), np.uint8),
    "vector": array_spec.ArraySpec((5,), np.float64),
    "log_reward": array_spec.ArraySpec((), np.float32),
  }
  spec = step_spec(obs, array_spec.BoundedArraySpec((), np.int64, 0, 5))
  assert sorted(spec["obs"]) == ["image", "vector"]
  assert spec["obs"]["vector"].dtype == tf.float32 and spec["action"].dtype == tf.int32
  spec = step_spec(obs, array_spec.BoundedArraySpec((6,), np.float32, -1, 1))
  assert spec["action"].shape == (6,) and spec["action"].dtype == tf.float32


def test_stats_report_compression():
  replay = make_replay(num_streams=2)
  fill(replay, 0, 128)
  stats = replay.stats()
  assert stats["steps"] == 256
  assert stats["compression_ratio"] > 2 and stats["bytes_per_step"] < 768


def _starts(batch, length):
  return [check_window(window(batch, i), length) for i in range(len(batch["reward"]))]


def test_online_queue_trains_on_fresh_windows_first():
  # embodied/core/replay.py (e3f0224): a stream queues the window ending at its step n when n is a
  # positive multiple of the length, so windows [1, L], [L + 1, 2L], ... each once, oldest first.
  replay = make_replay(num_streams=2, online_length=10)
  fill(replay, 0, 10)
  assert replay.queued == 0  # Step 9 ends no queued window: the first ends at step 10.
  fill(replay, 10, 21)
  assert replay.queued == 4  # Windows starting at 1 and 11, for both streams.
  batch = _starts(replay.sample(3, 10), 10)
  assert batch[:3] == [(0, 1), (1, 1), (0, 11)] and replay.queued == 1
  batch = _starts(replay.sample(3, 10), 10)
  assert batch[0] == (1, 11) and replay.queued == 0  # The rest of the batch is uniform.
  fill(replay, 21, 31)
  assert _starts(replay.sample(2, 10), 10) == [(0, 21), (1, 21)]
  fill(replay, 31, 41)
  replay.sample(4, 12)  # Other lengths (reports) sample uniformly and leave the queue alone.
  assert replay.queued == 2


def test_online_queue_drops_evicted_windows_and_is_off_by_default():
  replay = make_replay(num_streams=1, capacity=25, online_length=10)
  fill(replay, 0, 41)  # Queued: 1, 11, 21, 31; the stream keeps steps 16..40.
  assert replay.queued == 2
  assert _starts(replay.sample(2, 10), 10) == [(0, 21), (0, 31)]
  plain = make_replay(num_streams=1)
  fill(plain, 0, 41)
  assert plain.queued == 0


def test_from_config_queues_online_windows_of_the_training_length():
  from dreamer_tf.config import load_config

  nature, plain = load_config(None, ["nature", "debug"]), load_config(None, ["debug"])
  replay = SequenceReplayBuffer.from_config(nature, make_spec())
  length = nature.replay.batch_length + nature.replay.context
  fill(replay, 0, length + 1)
  assert replay.queued == nature.run.envs
  assert SequenceReplayBuffer.from_config(plain, make_spec())._online_length == 0
