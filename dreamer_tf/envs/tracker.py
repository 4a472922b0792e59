"""Per-environment episode statistics from batched TimeSteps, for the logger."""

from __future__ import annotations

import numpy as np
from tf_agents.trajectories import time_step as ts

FAULT_KEY = "log_env_fault"  # Set to 1 on the LAST step of an episode cut short by an environment crash.


class EpisodeTracker:
  """Accumulates each environment's episode return and length and reports finished episodes.

  Feed it every TimeStep the (batched) environment returns, FIRST steps included::

    tracker = EpisodeTracker()
    time_step = env.reset()
    tracker.update(time_step)
    while ...:
      time_step = env.step(action)
      for stats in tracker.update(time_step):
        logger.scalars({f"episode/{k}": v for k, v in stats.items()})

  ``length`` counts agent steps (actions taken), so the FIRST step adds 0 and each
  later step 1; ``return`` sums the rewards of those steps. Scalar observation keys
  starting with ``log_`` (e.g. Crafter's ``log_achievement_collect_wood``) are reported
  with their value at the LAST step. Episodes cut short by an environment crash (their LAST
  step has ``log_env_fault == 1``, see ``FaultTolerantEnv``) are not reported; ``env_faults``
  counts them.

  Args:
    num_envs: Batch size; inferred from the first update when None.
  """

  def __init__(self, num_envs: int | None = None):
    self._returns = None if num_envs is None else np.zeros(num_envs, np.float64)
    self._lengths = None if num_envs is None else np.zeros(num_envs, np.int64)
    self.env_faults = 0

  def update(self, time_step) -> list[dict[str, float]]:
    """Adds one (batched or unbatched) TimeStep.

    Args:
      time_step: A TF-Agents TimeStep with numpy arrays or eager tensors; unbatched
        steps (scalar ``step_type``) count as a batch of one.

    Returns:
      One dict per episode that ended at this step, with float ``return``, ``length``,
      ``env`` (its index in the batch) and the LAST step's scalar ``log_`` values.
    """
    step_type = np.asarray(time_step.step_type)
    batched = step_type.ndim > 0
    step_type = step_type.reshape(-1)
    reward = np.asarray(time_step.reward, np.float64).reshape(step_type.shape[0], -1)[:, 0]
    if self._returns is None or self._returns.shape[0] != step_type.shape[0]:
      self._returns = np.zeros(step_type.shape[0], np.float64)
      self._lengths = np.zeros(step_type.shape[0], np.int64)
    first = step_type == ts.StepType.FIRST
    self._returns = np.where(first, 0.0, self._returns + reward)
    self._lengths = np.where(first, 0, self._lengths + 1)
    finished = []
    observation = time_step.observation if isinstance(time_step.observation, dict) else {}
    for index in np.flatnonzero(step_type == ts.StepType.LAST):
      if FAULT_KEY in observation and np.asarray(observation[FAULT_KEY]).reshape(-1)[index if batched else 0] > 0:
        self.env_faults += 1  # A broken episode: its return and length mean nothing.
        continue
      stats = {
        "return": float(self._returns[index]),
        "length": float(self._lengths[index]),
        "env": float(index),
      }
      for key, value in observation.items():
        if key.startswith("log_"):
          value = np.asarray(value)
          value = value[index] if batched else value
          if value.size == 1:
            stats[key] = float(value.reshape(()))
      finished.append(stats)
    return finished

  def reset(self) -> None:
    """Forgets all partial episodes."""
    self._returns = self._lengths = None
