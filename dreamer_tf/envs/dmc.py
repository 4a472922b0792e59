"""DeepMind Control Suite tasks, from pixels (``dmc_``) or proprioceptive states (``dmcproprio_``).

2023 paper settings (Hafner et al. 2023, arXiv v1): action repeat 2, 64x64 renders from
the domain's camera (quadruped: camera 2, other domains: camera 0), actions normalized to
[-1, 1]. Episodes end by the suite's 1000-step time limit, a truncation (discount 1).
"""

from __future__ import annotations

import difflib

import numpy as np
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from dreamer_tf.envs.action_repeat import DmActionRepeat
from dreamer_tf.envs.base import DictEnvironment, make_step
from dreamer_tf.envs.normalize_action import NormalizeAction
from dreamer_tf.errors import MissingDependencyError, UserError

DEFAULT_CAMERAS = {"quadruped": 2}


def _import_suite():
  try:
    from dm_control import suite
  except ImportError:
    raise MissingDependencyError("dm-control", "DeepMind Control environments") from None
  return suite


def tasks() -> list[str]:
  """All ``<domain>_<task>`` names of the suite, e.g. ``walker_walk``."""
  return sorted(f"{d}_{t}" for d, t in _import_suite().ALL_TASKS)


def split_task(task: str, prefix: str = "dmc") -> tuple[str, str]:
  """Splits ``walker_walk`` or ``ball_in_cup_catch`` into (domain, task); UserError if unknown."""
  suite = _import_suite()
  for domain, name in suite.ALL_TASKS:
    if f"{domain}_{name}" == task:
      return domain, name
  valid = tasks()
  close = difflib.get_close_matches(task, valid, n=1)
  hint = f"did you mean '{prefix}_{close[0]}'? " if close else ""
  raise UserError(f"unknown DeepMind Control task '{task}'; {hint}valid tasks: {', '.join(valid)}")


class DMCEnvironment(DictEnvironment):
  """A DeepMind Control task as a TF-Agents PyEnvironment.

  Observations: ``image`` (uint8 HxWx3, rendered after the last repeated physics step)
  and/or the task's proprioceptive arrays, each as a float32 vector under its own key.

  Args:
    domain: Suite domain, e.g. ``walker``.
    task: Suite task, e.g. ``walk``.
    size: ``(height, width)`` of the render.
    repeat: Control steps per agent step (rewards summed).
    camera: Camera id; -1 picks the domain's default (quadruped 2, else 0).
    image: Whether to render ``obs['image']``.
    proprio: Whether to include the proprioceptive vectors.
    seed: Seeds the task's initial states.
    time_limit: Episode length in simulated seconds; None keeps the task's own (1000 control steps).
  """

  def __init__(
    self,
    domain: str,
    task: str,
    *,
    size=(64, 64),
    repeat: int = 2,
    camera: int = -1,
    image: bool = True,
    proprio: bool = False,
    seed: int = 0,
    time_limit: float | None = None,
  ):
    super().__init__()
    if not (image or proprio):
      raise UserError("env.dmc.image and env.dmc.proprio are both false; enable at least one")
    if repeat < 1:
      raise UserError(f"env.dmc.repeat must be at least 1, got {repeat}")
    suite = _import_suite()
    task_kwargs = {"random": int(seed)}
    if time_limit is not None:  # The suite's task loaders take it next to the seed.
      task_kwargs["time_limit"] = float(time_limit)
    env = suite.load(domain, task, task_kwargs=task_kwargs)
    self._env = DmActionRepeat(env, repeat)
    self._size = (int(size[0]), int(size[1]))
    self._camera = DEFAULT_CAMERAS.get(domain, 0) if camera == -1 else int(camera)
    self._image = bool(image)
    self._proprio = bool(proprio)
    spec = {}
    if self._image:
      spec["image"] = array_spec.ArraySpec(self._size + (3,), np.uint8, name="image")
    if self._proprio:
      for key, value in env.observation_spec().items():
        if key == "image":
          raise UserError(f"dmc_{domain}_{task} has a state named 'image'; use env.dmc.image=false")
        spec[key] = array_spec.ArraySpec((int(np.prod(value.shape, dtype=np.int64)),), np.float32, name=key)
    self._observation_spec = spec
    act = env.action_spec()
    self._normalize = NormalizeAction(act.minimum, act.maximum)
    self._action_spec = self._normalize.spec

  def _observation(self, step):
    obs = {}
    if self._image:
      obs["image"] = self._env.physics.render(*self._size, camera_id=self._camera)
    if self._proprio:
      for key in self._observation_spec:
        if key != "image":
          obs[key] = np.asarray(step.observation[key], np.float32).reshape(-1)
    return obs

  def _reset(self):
    return ts.restart(self._observation(self._env.reset()))

  def _step(self, action):
    step = self._env.step(self._normalize(action))
    last = step.last()
    return make_step(self._observation(step), step.reward, last=last, terminal=last and step.discount == 0)

  def render(self, mode="rgb_array"):
    return self._env.physics.render(*self._size, camera_id=self._camera)

  def close(self):
    self._env.close()


def make(task: str, config, seed: int = 0, proprio_only: bool = False) -> DMCEnvironment:
  """Builds ``dmc_<domain>_<task>`` (or ``dmcproprio_`` with ``proprio_only``) from ``config.env.dmc``."""
  c = config.env.dmc
  domain, name = split_task(task, "dmcproprio" if proprio_only else "dmc")
  image, proprio = (False, True) if proprio_only else (c.image, c.proprio)
  return DMCEnvironment(
    domain,
    name,
    size=tuple(c.size),
    repeat=c.repeat,
    camera=c.camera,
    image=image,
    proprio=proprio,
    seed=seed,
  )
