"""Adapter from a gymnasium environment (5-tuple ``step``) to a TF-Agents PyEnvironment.

TF-Agents 0.19 only wraps the old ``gym`` package, so this adapter does the conversion:

* observation space -> dict observation: a Box image (uint8, HxW or HxWxC with C in 1, 3, 4)
  becomes ``image`` (resized), any other Box a float32 vector ``vector``; a Dict space keeps
  its keys (nested keys joined with ``/``), Discrete becomes a one-hot float32 vector and
  MultiDiscrete / MultiBinary a float32 vector. Keys starting with ``log_`` are logged only.
* action space: Discrete(n) -> int32 scalar in [0, n-1]; Box -> float32 vector in [-1, 1],
  scaled to the box's bounds and clipped (:class:`NormalizeAction`).
* ``terminated`` -> LAST with discount 0; ``truncated`` (time limit) -> LAST with discount 1.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from dreamer_tf.envs.base import DictEnvironment, make_step
from dreamer_tf.envs.normalize_action import NormalizeAction
from dreamer_tf.envs.resize import check_resize_method, resize_image
from dreamer_tf.errors import UserError


def is_image_space(space) -> bool:
  """Whether a gymnasium space is an image: uint8 Box, HxW or HxWxC with C in (1, 3, 4)."""
  if not isinstance(space, spaces.Box) or space.dtype != np.uint8:
    return False
  shape = space.shape
  return (len(shape) == 2 and min(shape) > 1) or (len(shape) == 3 and shape[-1] in (1, 3, 4))


def _flatten_space(space, prefix: str, out: dict) -> None:
  if isinstance(space, spaces.Dict):
    for key, sub in space.spaces.items():
      _flatten_space(sub, f"{prefix}/{key}" if prefix else str(key), out)
  elif isinstance(space, spaces.Tuple):
    for index, sub in enumerate(space.spaces):
      _flatten_space(sub, f"{prefix}/{index}" if prefix else str(index), out)
  else:
    out[prefix] = space


def observation_spaces(space) -> dict:
  """The leaf spaces of an observation space under their observation keys."""
  if isinstance(space, (spaces.Dict, spaces.Tuple)):
    leaves: dict = {}
    _flatten_space(space, "", leaves)
    return leaves
  return {"image" if is_image_space(space) else "vector": space}


def _leaf(space, key: str):
  """Returns (spec, converter) for one leaf space."""
  if isinstance(space, spaces.Discrete):
    n, start = int(space.n), int(space.start)

    def one_hot(x):
      out = np.zeros((n,), np.float32)
      out[int(x) - start] = 1.0
      return out

    return array_spec.ArraySpec((n,), np.float32, name=key), one_hot
  if isinstance(space, (spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)):
    shape = tuple(space.shape)
    if key.startswith("log_") and int(np.prod(shape, dtype=np.int64)) == 1:
      return array_spec.ArraySpec((), np.float32, name=key), lambda x: np.asarray(x, np.float32).reshape(())
    size = int(np.prod(shape, dtype=np.int64))
    return (
      array_spec.ArraySpec((size,), np.float32, name=key),
      lambda x: np.asarray(x, np.float32).reshape(-1),
    )
  raise UserError(
    f"observation key '{key}' has an unsupported gymnasium space {space}; use Box, Dict, Tuple, "
    "Discrete, MultiDiscrete or MultiBinary"
  )


class GymnasiumEnvironment(DictEnvironment):
  """A gymnasium environment as a TF-Agents PyEnvironment with a dict observation.

  Args:
    env: The gymnasium environment (already made; closed by :meth:`close`).
    size: ``(height, width)`` that image observations are resized to.
    resize: ``area`` or ``bilinear``.
    seed: Seeds the first reset and the action space; later resets continue that RNG.
  """

  def __init__(self, env, *, size=(64, 64), resize: str = "area", seed: int = 0):
    super().__init__()
    check_resize_method(resize, "env.gym.resize")
    self._env = env
    self._seed = int(seed)
    self._seeded = False
    self._size = (int(size[0]), int(size[1]))
    self._resize = resize
    self._converters = {}
    spec = {}
    self._top_level = not isinstance(env.observation_space, (spaces.Dict, spaces.Tuple))
    for key, space in observation_spaces(env.observation_space).items():
      if is_image_space(space):
        channels = space.shape[2] if len(space.shape) == 3 else 1
        spec[key] = array_spec.ArraySpec(self._size + (channels,), np.uint8, name=key.replace("/", "_"))
        self._converters[key] = lambda x: np.ascontiguousarray(
          resize_image(np.asarray(x, np.uint8), self._size, self._resize)
        )
      else:
        spec[key], self._converters[key] = _leaf(space, key)
    self._observation_spec = spec
    action_space = env.action_space
    if isinstance(action_space, spaces.Discrete):
      self._action_start = int(action_space.start)
      self._normalize = None
      self._action_spec = array_spec.BoundedArraySpec((), np.int32, 0, int(action_space.n) - 1, name="action")
    elif isinstance(action_space, spaces.Box):
      self._normalize = NormalizeAction(action_space.low, action_space.high)
      self._action_dtype = action_space.dtype
      self._action_spec = self._normalize.spec
    else:
      raise UserError(
        f"gymnasium action space {action_space} is not supported; use Discrete or Box "
        "(wrap other spaces in a gymnasium.ActionWrapper)"
      )
    env.action_space.seed(self._seed)

  @property
  def gym_env(self):
    """The wrapped gymnasium environment."""
    return self._env

  def _observation(self, raw):
    if self._top_level:
      leaves = {next(iter(self._converters)): raw}
    else:
      leaves = {}
      self._collect(raw, "", leaves)
    return {key: convert(leaves[key]) for key, convert in self._converters.items()}

  def _collect(self, raw, prefix, out):
    if isinstance(raw, dict):
      for key, value in raw.items():
        self._collect(value, f"{prefix}/{key}" if prefix else str(key), out)
    elif isinstance(raw, tuple):
      for index, value in enumerate(raw):
        self._collect(value, f"{prefix}/{index}" if prefix else str(index), out)
    else:
      out[prefix] = raw

  def _reset(self):
    if self._seeded:
      raw, _ = self._env.reset()
    else:
      raw, _ = self._env.reset(seed=self._seed)
      self._seeded = True
    return ts.restart(self._observation(raw))

  def _step(self, action):
    if self._normalize is None:
      act = int(action) + self._action_start
    else:
      act = self._normalize(action).astype(self._action_dtype)
    raw, reward, terminated, truncated, _ = self._env.step(act)
    return make_step(
      self._observation(raw), float(reward), last=bool(terminated or truncated), terminal=bool(terminated)
    )

  def render(self, mode="rgb_array"):
    return self._env.render()

  def close(self):
    self._env.close()
