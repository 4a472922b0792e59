"""Shared wrappers: action normalization, action repeat, resizing."""

import numpy as np
import pytest

from dreamer_tf.config import load_config
from dreamer_tf.envs import make_env
from dreamer_tf.envs.action_repeat import ActionRepeat
from dreamer_tf.envs.normalize_action import NormalizeAction
from dreamer_tf.envs.resize import resize_image
from dreamer_tf.errors import UserError


def test_normalize_action_maps_and_clips():
  norm = NormalizeAction([0.0, -2.0, -np.inf], [10.0, 2.0, np.inf])
  assert norm.spec.shape == (3,) and norm.spec.dtype == np.float32
  np.testing.assert_allclose(norm([-1.0, 0.0, 0.5]), [0.0, 0.0, 0.5])
  np.testing.assert_allclose(norm([1.0, 1.0, 4.0]), [10.0, 2.0, 1.0])  # Unbounded dims: clip only.
  np.testing.assert_allclose(norm([3.0, -9.0, -9.0]), [10.0, -2.0, -1.0])


def test_action_repeat_wrapper_stops_at_last():
  env = ActionRepeat(make_env("gym_toy_gym_env:ToyDict-v0", load_config()), 2)
  env.reset()
  assert env.step(np.zeros(2, np.float32)).reward == 1.0 + 2.0
  assert env.step(np.zeros(2, np.float32)).reward == 3.0 + 4.0
  last = env.step(np.zeros(2, np.float32))  # Truncated after the 5th inner step.
  assert last.is_last() and last.reward == 5.0 and last.discount == 1.0


def test_resize():
  image = np.arange(32 * 48 * 3, dtype=np.uint8).reshape(32, 48, 3)
  assert resize_image(image, (16, 16)).shape == (16, 16, 3)
  assert resize_image(image[:, :, 0], (8, 8), "bilinear").shape == (8, 8, 1)
  assert resize_image(image, (32, 48)) is image
  with pytest.raises(UserError, match="area, bilinear"):
    make_env("atari_pong", load_config("atari_pong", overrides=["env.atari.resize=nearest"]))
