"""Crafter (Hafner 2021): ``crafter_reward`` and ``crafter_noreward``, 64x64 images.

Each of the 22 achievements is exposed as ``obs['log_achievement_<name>']`` (float32, how
often it was unlocked so far in the episode). ``log_`` keys are logged, never modelled: at
the LAST step they hold the episode's counts, from which the Crafter score (success rates)
is computed. Dying ends the episode with discount 0; the 10,000-step limit truncates it.
"""

from __future__ import annotations

import numpy as np
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from dreamer_tf.envs.base import DictEnvironment, make_step
from dreamer_tf.errors import MissingDependencyError, UserError

TASKS = ("reward", "noreward")


def _import_crafter():
  try:
    import crafter
  except ImportError:
    raise MissingDependencyError("crafter", "Crafter environments") from None
  return crafter


class CrafterEnvironment(DictEnvironment):
  """Crafter as a TF-Agents PyEnvironment (17 discrete actions).

  Args:
    reward: Whether the agent receives Crafter's reward (``crafter_reward``) or none.
    size: ``(height, width)`` of ``obs['image']``.
    length: Time limit in steps.
    achievements: Whether to add the ``log_achievement_*`` keys.
    seed: Seeds world generation (each episode's world follows from it).
  """

  def __init__(
    self, reward: bool = True, *, size=(64, 64), length: int = 10000, achievements: bool = True, seed: int = 0
  ):
    super().__init__()
    crafter = _import_crafter()
    self._size = (int(size[0]), int(size[1]))
    # crafter takes (width, height); it renders at this size directly.
    self._env = crafter.Env(
      size=(self._size[1], self._size[0]), reward=bool(reward), length=int(length) or None, seed=int(seed)
    )
    self._achievements = sorted(crafter.constants.achievements) if achievements else []
    spec = {"image": array_spec.ArraySpec(self._size + (3,), np.uint8, name="image")}
    for name in self._achievements:
      key = f"log_achievement_{name}"
      spec[key] = array_spec.ArraySpec((), np.float32, name=key)
    self._observation_spec = spec
    self._action_spec = array_spec.BoundedArraySpec((), np.int32, 0, self._env.action_space.n - 1, name="action")

  @property
  def action_names(self) -> list[str]:
    return list(_import_crafter().constants.actions)

  def _observation(self, image, counts):
    obs = {"image": np.asarray(image, np.uint8)}
    for name in self._achievements:
      obs[f"log_achievement_{name}"] = np.asarray(counts.get(name, 0), np.float32)
    return obs

  def _reset(self):
    return ts.restart(self._observation(self._env.reset(), {}))

  def _step(self, action):
    image, reward, done, info = self._env.step(int(action))  # The old gym 4-tuple API.
    terminal = bool(done) and info["discount"] == 0
    return make_step(self._observation(image, info["achievements"]), reward, last=bool(done), terminal=terminal)

  def render(self, mode="rgb_array"):
    return self._env.render()


def make(task: str, config, seed: int = 0) -> CrafterEnvironment:
  """Builds ``crafter_reward`` / ``crafter_noreward`` from ``config.env.crafter``."""
  if task not in TASKS:
    raise UserError(f"unknown Crafter task '{task}'; valid: crafter_reward, crafter_noreward")
  c = config.env.crafter
  return CrafterEnvironment(
    task == "reward", size=tuple(c.size), length=c.length, achievements=c.achievements, seed=seed
  )
