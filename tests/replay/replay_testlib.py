"""Helpers for the replay tests: a small step spec and steps whose content encodes (stream, t)."""

import numpy as np
import tensorflow as tf

IMAGE_SHAPE = (16, 16, 3)  # 768 bytes per frame: large enough to be packed.


def make_spec(image_shape=IMAGE_SHAPE, action_dim=2):
  return {
    "obs": {
      "image": tf.TensorSpec(image_shape, tf.uint8),
      "vector": tf.TensorSpec((3,), tf.float32),
    },
    "action": tf.TensorSpec((action_dim,), tf.float32),
    "reward": tf.TensorSpec((), tf.float32),
    "is_first": tf.TensorSpec((), tf.bool),
    "is_last": tf.TensorSpec((), tf.bool),
    "is_terminal": tf.TensorSpec((), tf.bool),
  }


def episode_length(stream):
  return 5 + 2 * stream


def frame(stream, t, shape=IMAGE_SHAPE):
  """A deterministic, partly compressible frame for step t of a stream."""
  base = np.arange(np.prod(shape), dtype=np.int64).reshape(shape) // 7
  return ((base + 3 * t + 101 * stream) % 256).astype(np.uint8)


def make_step(num_streams, t, shape=IMAGE_SHAPE):
  """The batched step t: reward encodes (stream, t); episodes of stream s last 5 + 2s steps."""
  streams = np.arange(num_streams)
  lengths = np.array([episode_length(s) for s in streams])
  return {
    "obs": {
      "image": np.stack([frame(s, t, shape) for s in streams]),
      "vector": np.stack([np.array([s, t, -t], np.float32) for s in streams]),
    },
    "action": np.stack([np.array([s / 10, t / 1000], np.float32) for s in streams]),
    "reward": (1000 * streams + t).astype(np.float32),
    "is_first": t % lengths == 0,
    "is_last": t % lengths == lengths - 1,
    "is_terminal": (t % lengths == lengths - 1) & (streams % 2 == 0),
  }


def fill(replay, start, stop):
  for t in range(start, stop):
    replay.add_batch(make_step(replay.num_streams, t, tuple(replay.data_spec["obs"]["image"].shape)))


def check_window(win, length):
  """Checks that a sampled window is a consecutive, correctly decoded slice of one stream."""
  reward = win["reward"]
  stream, t0 = int(reward[0]) // 1000, int(reward[0]) % 1000
  ts = t0 + np.arange(length)
  np.testing.assert_array_equal(reward, 1000 * stream + ts)
  shape = win["obs"]["image"].shape[1:]
  for k, t in enumerate(ts):
    np.testing.assert_array_equal(win["obs"]["image"][k], frame(stream, t, shape))
  np.testing.assert_array_equal(win["obs"]["vector"][:, 1], ts)
  n = episode_length(stream)
  assert win["is_first"][0]
  np.testing.assert_array_equal(win["is_first"][1:], ts[1:] % n == 0)
  np.testing.assert_array_equal(win["is_last"], ts % n == n - 1)
  return stream, t0


def window(batch, i):
  return tf.nest.map_structure(lambda x: x[i], batch)
