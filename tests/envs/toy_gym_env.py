"""Tiny gymnasium environments registered on import, for ``--env=gym_toy_gym_env:Toy-v0`` tests."""

import gymnasium
import numpy as np
from gymnasium import spaces


class ToyDictEnv(gymnasium.Env):
  """Dict observation (image, vector, log_ key), Box action echoed in the observation.

  Reward at step t is t. The episode terminates when the first action component exceeds 9.5
  (the agent's +1 maps to 10) and is truncated by the registry's max_episode_steps=5.
  """

  metadata = {"render_modes": []}

  def __init__(self):
    self.observation_space = spaces.Dict(
      {
        "image": spaces.Box(0, 255, (32, 48, 3), np.uint8),
        "vector": spaces.Box(-np.inf, np.inf, (3,), np.float32),
        "log_score": spaces.Box(-np.inf, np.inf, (), np.float32),
      }
    )
    self.action_space = spaces.Box(np.array([0.0, -5.0], np.float32), np.array([10.0, 5.0], np.float32))
    self._t = 0
    self._score = 0.0

  def _obs(self, action):
    return {
      "image": np.full((32, 48, 3), self._t * 10, np.uint8),
      "vector": np.array([action[0], action[1], self._t], np.float32),
      "log_score": np.array(self._score, np.float32),
    }

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    self._t = 0
    self._score = float(self.np_random.integers(0, 1000))
    return self._obs(np.zeros(2, np.float32)), {}

  def step(self, action):
    self._t += 1
    self._score += 1.0
    terminated = bool(action[0] > 9.5)
    return self._obs(action), float(self._t), terminated, False, {}


class ToyImageEnv(gymnasium.Env):
  """Top-level Box image observation, Discrete(3, start=1) action; reward = the action taken."""

  metadata = {"render_modes": []}

  def __init__(self):
    self.observation_space = spaces.Box(0, 255, (16, 16, 3), np.uint8)
    self.action_space = spaces.Discrete(3, start=1)

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    return np.zeros((16, 16, 3), np.uint8), {}

  def step(self, action):
    assert action in (1, 2, 3), action
    return np.full((16, 16, 3), 50 * action, np.uint8), float(action), False, False, {}


gymnasium.register("ToyDict-v0", entry_point=ToyDictEnv, max_episode_steps=5)
gymnasium.register("ToyImage-v0", entry_point=ToyImageEnv, max_episode_steps=7)
