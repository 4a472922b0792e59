"""A tiny 1-D "walk to the goal" gymnasium task for the learning test.

Registered on import as ``GoalLine-v0``; train on it with
``--env=gym_goal_line_env:GoalLine-v0`` (with ``tests/learning`` on ``PYTHONPATH``).

The agent stands on one of ``2 * RADIUS + 1`` cells of a line; the goal is the centre cell.
Each episode starts on a random cell other than the goal and lasts ``LENGTH`` steps (a
time-limit truncation, never a termination). Actions: 0 steps left, 1 stays, 2 steps right
(clipped at the ends). After every step the reward is ``1 - |position| / RADIUS``: 1 on the
goal, 0 on the outermost cells. The observation is ``[position / RADIUS]``.

The best policy walks straight to the goal and stays there, for a mean return of about 19.0
(``LENGTH`` minus the rewards lost on the way in); a uniformly random policy wanders and earns
about 8.8 (standard deviation 5 over episodes), and always staying put earns about 8.1.

``GoalLineContinuous-v0`` is the same task with a continuous action in ``[-1, 1]``: the agent
moves by that many cells (the position is real-valued and clipped at the ends). It exercises the
continuous actor and its dynamics-backpropagation gradient on the same reward.
"""

import gymnasium
import numpy as np
from gymnasium import spaces

RADIUS = 6
LENGTH = 20
ENV_ID = "GoalLine-v0"
CONTINUOUS_ENV_ID = "GoalLineContinuous-v0"


class GoalLineEnv(gymnasium.Env):
  """Walk along a line to its centre cell and stay there; dense reward for being close."""

  metadata = {"render_modes": []}

  def __init__(self):
    self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    self.action_space = spaces.Discrete(3)
    self._position = 0

  def _obs(self):
    return np.array([self._position / RADIUS], np.float32)

  def reset(self, *, seed=None, options=None):
    super().reset(seed=seed)
    offset = int(self.np_random.integers(1, RADIUS + 1))
    self._position = offset if self.np_random.random() < 0.5 else -offset
    return self._obs(), {}

  def step(self, action):
    self._position = int(np.clip(self._position + int(action) - 1, -RADIUS, RADIUS))
    reward = 1.0 - abs(self._position) / RADIUS
    return self._obs(), float(reward), False, False, {}


class GoalLineContinuousEnv(GoalLineEnv):
  """GoalLine with a continuous move of ``action`` cells per step, ``action`` in ``[-1, 1]``."""

  def __init__(self):
    super().__init__()
    self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    self._position = 0.0

  def step(self, action):
    move = float(np.clip(np.asarray(action, np.float32).reshape(-1)[0], -1.0, 1.0))
    self._position = float(np.clip(self._position + move, -RADIUS, RADIUS))
    reward = 1.0 - abs(self._position) / RADIUS
    return self._obs(), float(reward), False, False, {}


if ENV_ID not in gymnasium.registry:
  gymnasium.register(ENV_ID, entry_point=GoalLineEnv, max_episode_steps=LENGTH)
if CONTINUOUS_ENV_ID not in gymnasium.registry:
  gymnasium.register(CONTINUOUS_ENV_ID, entry_point=GoalLineContinuousEnv, max_episode_steps=LENGTH)
