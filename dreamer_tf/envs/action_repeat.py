"""Action repeat: one agent step runs the environment ``repeat`` times and sums the rewards."""

from __future__ import annotations

import dm_env
import numpy as np
from tf_agents.environments import wrappers


class ActionRepeat(wrappers.PyEnvironmentBaseWrapper):
  """Repeats each action on a TF-Agents PyEnvironment, summing rewards.

  Stops early when the episode ends; the returned step carries the last
  sub-step's observation, step type and discount and the summed reward.

  Args:
    env: The PyEnvironment to wrap (unbatched).
    repeat: Number of environment steps per agent step (>= 1).
  """

  def __init__(self, env, repeat: int):
    super().__init__(env)
    if repeat < 1:
      raise ValueError(f"repeat must be at least 1, got {repeat}")
    self._repeat = int(repeat)

  def _step(self, action):
    total = 0.0
    for _ in range(self._repeat):
      step = self._env.step(action)
      total += float(step.reward)
      if step.is_last():
        break
    return step._replace(reward=np.asarray(total, np.float32))

  def _reset(self):
    return self._env.reset()


class DmActionRepeat(dm_env.Environment):
  """Repeats each action on a ``dm_env.Environment`` (DeepMind Control), summing rewards.

  Repeating below the TF-Agents adapter lets the DMC adapter render only the
  last frame of each agent step.

  Args:
    env: The dm_env environment.
    repeat: Number of physics-control steps per agent step (>= 1).
  """

  def __init__(self, env: dm_env.Environment, repeat: int):
    if repeat < 1:
      raise ValueError(f"repeat must be at least 1, got {repeat}")
    self._env = env
    self._repeat = int(repeat)

  def __getattr__(self, name):
    return getattr(self._env, name)

  def reset(self):
    return self._env.reset()

  def step(self, action):
    total = 0.0
    for _ in range(self._repeat):
      step = self._env.step(action)
      total += float(step.reward or 0.0)
      if step.last():
        break
    return step._replace(reward=total)

  def observation_spec(self):
    return self._env.observation_spec()

  def action_spec(self):
    return self._env.action_spec()
