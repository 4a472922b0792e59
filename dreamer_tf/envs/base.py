"""Shared pieces of the suites: the dict-observation PyEnvironment base and TimeStep helpers."""

from __future__ import annotations

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.trajectories import time_step as ts


def make_step(observation, reward: float, last: bool, terminal: bool, discount: float = 1.0):
  """Builds a MID or LAST TF-Agents TimeStep.

  Args:
    observation: The observation dict.
    reward: Reward received on arriving at this step.
    last: Whether the episode ends here (termination or truncation).
    terminal: Whether it ends by true termination (discount 0); a LAST step that is not
      terminal is a time-limit truncation (discount 1).
    discount: The discount of a MID step (1, or 0 for a life loss under ``lives: discount``).

  Returns:
    The TimeStep.
  """
  reward = np.asarray(reward, np.float32)
  if not last:
    return ts.transition(observation, reward, discount=np.asarray(discount, np.float32))
  if terminal:
    return ts.termination(observation, reward)
  return ts.truncation(observation, reward, discount=np.asarray(1.0, np.float32))


class DictEnvironment(py_environment.PyEnvironment):
  """A PyEnvironment with a dict observation that resets itself after a LAST step.

  Subclasses set ``self._observation_spec`` (a dict of ArraySpecs) and
  ``self._action_spec`` and implement ``_reset`` and ``_step``.
  """

  def __init__(self):
    super().__init__(handle_auto_reset=True)

  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._action_spec

  def get_info(self):
    return {}

  def get_state(self):
    raise NotImplementedError(f"{type(self).__name__} does not support get_state")

  def set_state(self, state):
    raise NotImplementedError(f"{type(self).__name__} does not support set_state")
