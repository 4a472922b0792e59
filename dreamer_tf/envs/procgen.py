"""ProcGen (Cobbe et al. 2020): ``procgen_<game>``, e.g. ``procgen_coinrun``; 64x64 RGB frames.

Needs the ``[procgen]`` extra, ``procgen-mirror==0.10.7`` (the build the official DreamerV3
code uses; it brings gym3). ProcGen restarts an episode by itself, so the LAST step's
observation is already the next episode's first frame, and ProcGen reports no time-limit
flag: every episode end is treated as a termination (discount 0).
"""

from __future__ import annotations

import difflib

import numpy as np
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from dreamer_tf.envs.base import DictEnvironment, make_step
from dreamer_tf.envs.resize import check_resize_method, resize_image
from dreamer_tf.errors import MissingDependencyError, UserError


def _import_procgen():
  try:
    import procgen
    import procgen.env
  except ImportError:
    raise MissingDependencyError("procgen-mirror", "procgen_ environments", extra="procgen") from None
  return procgen


def games() -> list[str]:
  """The 16 ProcGen games."""
  return list(_import_procgen().env.ENV_NAMES)


class ProcgenEnvironment(DictEnvironment):
  """One ProcGen game as a TF-Agents PyEnvironment (15 discrete actions).

  Args:
    game: e.g. ``coinrun``.
    size: ``(height, width)`` of ``obs['image']`` (native 64x64 skips resizing).
    resize: ``area`` or ``bilinear``.
    distribution_mode: ``easy``, ``hard``, ``extreme``, ``memory`` or ``exploration``.
    num_levels: Number of levels to train on (0: unlimited).
    start_level: The first level's seed.
    seed: Seeds level generation.
  """

  def __init__(
    self,
    game: str,
    *,
    size=(64, 64),
    resize: str = "area",
    distribution_mode: str = "hard",
    num_levels: int = 0,
    start_level: int = 0,
    seed: int = 0,
  ):
    super().__init__()
    procgen = _import_procgen()
    check_resize_method(resize, "env.procgen.resize")
    valid = games()
    if game not in valid:
      close = difflib.get_close_matches(game, valid, n=1)
      hint = f"did you mean 'procgen_{close[0]}'? " if close else ""
      raise UserError(f"unknown ProcGen game '{game}'; {hint}valid games: {', '.join(valid)}")
    self._env = procgen.ProcgenGym3Env(
      num=1,
      env_name=game,
      distribution_mode=distribution_mode,
      num_levels=int(num_levels),
      start_level=int(start_level),
      rand_seed=int(seed),
    )
    self._size = (int(size[0]), int(size[1]))
    self._resize = resize
    self._observation_spec = {"image": array_spec.ArraySpec(self._size + (3,), np.uint8, name="image")}
    self._action_spec = array_spec.BoundedArraySpec(
      (), np.int32, 0, int(self._env.ac_space.eltype.n) - 1, name="action"
    )

  def _image(self, obs):
    return np.ascontiguousarray(resize_image(obs["rgb"][0], self._size, self._resize))

  def _reset(self):
    # At start-up and after a LAST step ProcGen already shows a new episode's first frame.
    _, obs, _ = self._env.observe()
    return ts.restart({"image": self._image(obs)})

  def _step(self, action):
    self._env.act(np.array([int(action)], np.int32))
    reward, obs, first = self._env.observe()
    last = bool(first[0])
    return make_step({"image": self._image(obs)}, float(reward[0]), last=last, terminal=last)


def make(task: str, config, seed: int = 0) -> ProcgenEnvironment:
  """Builds ``procgen_<game>`` from ``config.env.procgen``."""
  c = config.env.procgen
  return ProcgenEnvironment(
    task,
    size=tuple(c.size),
    resize=c.resize,
    distribution_mode=c.distribution_mode,
    num_levels=c.num_levels,
    start_level=c.start_level,
    seed=seed,
  )
