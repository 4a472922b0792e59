"""Rejects NaN and infinite observations and rewards before they reach replay and the model.

One NaN in a replayed observation turns every loss of every batch that samples it into NaN;
the train step then skips those updates (see docs/troubleshooting.md) and the run stalls far
from the cause. :class:`CheckFiniteObservations` stops at the cause instead, with a one-line
:class:`~dreamer_tf.errors.UserError` naming the environment, the key and the step.
"""

from __future__ import annotations

import numpy as np
from tf_agents.environments import wrappers

from dreamer_tf.errors import UserError


class NonFiniteObservationError(UserError):
  """An environment returned NaN or infinity in an observation or the reward."""


class CheckFiniteObservations(wrappers.PyEnvironmentBaseWrapper):
  """Raises a one-line UserError when a float observation key or the reward is not finite.

  Integer observations (``uint8`` images) cannot hold NaN and are not checked, so the cost is
  one ``np.isfinite`` per float key and step.

  Args:
    env: The (unbatched, dict-observation) PyEnvironment to check.
    name: The environment's name for the message, e.g. ``gym_Pendulum-v1``.
  """

  def __init__(self, env, name: str):
    super().__init__(env)
    self._name = name
    spec = env.observation_spec()
    specs = spec.items() if isinstance(spec, dict) else [("observation", spec)]
    self._float_keys = [key for key, s in specs if np.dtype(s.dtype).kind in "fc"]
    self._steps = 0

  def _reset(self):
    self._steps = 0
    return self._check(self._env.reset())

  def _step(self, action):
    self._steps += 1
    return self._check(self._env.step(action))

  def _check(self, time_step):
    if time_step.is_first():  # Also after the wrapped environment's own auto-reset.
      self._steps = 0
    observation = time_step.observation
    for key in self._float_keys:
      value = observation[key] if isinstance(observation, dict) else observation
      if not np.all(np.isfinite(value)):
        self._fail(f"observation '{key}'", value)
    if not np.all(np.isfinite(time_step.reward)):
      self._fail("reward", time_step.reward)
    return time_step

  def _fail(self, what: str, value) -> None:
    value = np.asarray(value)
    bad = "NaN" if np.any(np.isnan(value)) else "infinity"
    where = "its reset step" if self._steps == 0 else f"step {self._steps} of the episode"
    raise NonFiniteObservationError(
      f"environment {self._name} returned {bad} in {what} at {where}; fix the environment (or "
      "clip/replace non-finite values in your wrapper): non-finite inputs would poison training"
    )
