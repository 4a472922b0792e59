"""Shared by both reference launchers (run inside the reference venvs, not dreamer_tf's): their
command-line logdir, scalar metrics and gymnasium adapter.

The author's ``gym_`` suites speak the old gym API (reset returns the observation, step returns 4
values); this wraps a gymnasium task as the author's ``embodied.Env`` instead. The 2023 code's
``Space`` is ``embodied.Space``, the current code's ``elements.Space``: the caller passes its own.
"""

import pathlib

import numpy as np


def logdir_of(argv: list[str], launcher: str) -> pathlib.Path:
  """The ``--logdir DIR`` (or ``--logdir=DIR``) of the author's command line; one-line exit without it."""
  for i, arg in enumerate(argv):
    if arg == "--logdir" and i + 1 < len(argv):
      return pathlib.Path(argv[i + 1])
    if arg.startswith("--logdir="):
      return pathlib.Path(arg.split("=", 1)[1])
  raise SystemExit(f"error: pass --logdir DIR to the {launcher}")


def scalars(metrics: dict) -> dict:
  """The numeric scalar entries of a metrics dict, as floats."""
  out = {}
  for key, value in metrics.items():
    value = np.asarray(value)
    if value.ndim == 0 and np.issubdtype(value.dtype, np.number):
      out[key] = float(value)
  return out


def gymnasium_env_class(env_base, space):
  """A class of ``env_base`` that runs a gymnasium task with one 1-D Box observation.

  Args:
    env_base: The author's ``embodied.Env``.
    space: The author's ``Space`` class (``embodied.Space`` in 2023, ``elements.Space`` now).

  Returns:
    ``GymnasiumEnv(name)``: observation ``vector`` plus the reward and episode flags, action
    ``action`` (Discrete as int32 or Box as float32) plus ``reset``.
  """
  import gymnasium

  class GymnasiumEnv(env_base):
    """A gymnasium environment with one 1-D Box observation and a Discrete or Box action space."""

    def __init__(self, name: str):
      self._env = gymnasium.make(name)
      self._done = True
      obs, act = self._env.observation_space, self._env.action_space
      if not isinstance(obs, gymnasium.spaces.Box) or len(obs.shape) != 1:
        raise SystemExit(f"error: {name} needs a 1-D Box observation for the parity adapter, got {obs}")
      self._obs_space = space(np.float32, obs.shape, obs.low, obs.high)
      if isinstance(act, gymnasium.spaces.Discrete):
        self._act_space = space(np.int32, (), 0, int(act.n))
      elif isinstance(act, gymnasium.spaces.Box):
        self._act_space = space(np.float32, act.shape, act.low, act.high)
      else:
        raise SystemExit(f"error: {name} needs a Discrete or Box action space for the parity adapter, got {act}")

    @property
    def obs_space(self):
      return {
        "vector": self._obs_space,
        "reward": space(np.float32),
        "is_first": space(bool),
        "is_last": space(bool),
        "is_terminal": space(bool),
      }

    @property
    def act_space(self):
      return {"action": self._act_space, "reset": space(bool)}

    def step(self, action):
      if action["reset"] or self._done:
        self._done = False
        obs, _ = self._env.reset()
        return self._obs(obs, 0.0, is_first=True)
      act = action["action"]
      act = int(act) if self._act_space.discrete else np.asarray(act, np.float32)
      obs, reward, terminated, truncated, _ = self._env.step(act)
      self._done = bool(terminated or truncated)
      return self._obs(obs, reward, is_last=self._done, is_terminal=bool(terminated))

    def _obs(self, obs, reward, is_first=False, is_last=False, is_terminal=False):
      return {
        "vector": np.asarray(obs, np.float32),
        "reward": np.float32(reward),
        "is_first": is_first,
        "is_last": is_last,
        "is_terminal": is_terminal,
      }

    def close(self):
      self._env.close()

  return GymnasiumEnv
