"""Any registered gymnasium environment: ``gym_<id>``, e.g. ``gym_CartPole-v1``.

A user's own environment is made through gymnasium's ``module:EnvId`` form:
``--env=gym_mypackage.envs:MyEnv-v0`` imports ``mypackage.envs`` (which must call
``gymnasium.register``) and then makes ``MyEnv-v0``. ALE ids (``gym_ALE/Pong-v5``) register
ale_py first. Such environments take the config block of the nearest paper domain:
``dmc_vision`` with an image observation, ``dmc_proprio`` without (:func:`has_image`).
"""

from __future__ import annotations

import difflib
import importlib

from dreamer_tf.envs.action_repeat import ActionRepeat
from dreamer_tf.envs.gym_adapter import GymnasiumEnvironment, is_image_space, observation_spaces
from dreamer_tf.errors import MissingDependencyError, UserError


def _import_gymnasium():
  try:
    import gymnasium
  except ImportError:
    raise MissingDependencyError("gymnasium", "gym_ environments") from None
  return gymnasium


def _spec_id(task: str) -> str:
  """Imports the module of ``module:EnvId`` (and ale_py for ``ALE/``) and returns the env id."""
  gymnasium = _import_gymnasium()
  module, env_id = task.rsplit(":", 1) if ":" in task else (None, task)
  if module is not None:
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      raise UserError(
        f"gym_{task}: cannot import module '{module}' ({e}); make it importable (pip install it "
        "or add its folder to PYTHONPATH) and register the environment in it"
      ) from None
  if env_id.startswith("ALE/"):
    try:
      import ale_py
    except ImportError:
      raise MissingDependencyError("ale-py", "ALE gymnasium environments") from None
    gymnasium.register_envs(ale_py)
  if env_id not in gymnasium.registry:
    valid = list(gymnasium.registry)
    close = difflib.get_close_matches(env_id, valid, n=1)
    hint = f"did you mean 'gym_{close[0]}'? " if close else ""
    where = f" after importing '{module}'" if module else ""
    raise UserError(
      f"gymnasium environment '{env_id}' is not registered{where}; {hint}list the ids with "
      '`python -c "import gymnasium; gymnasium.pprint_registry()"`, or use gym_<module>:<EnvId> '
      "for your own registered environment"
    )
  return env_id


def _make_gym(task: str):
  gymnasium = _import_gymnasium()
  env_id = _spec_id(task)
  try:
    return gymnasium.make(env_id)
  except gymnasium.error.DependencyNotInstalled as e:
    raise UserError(f"gym_{task} needs a package that is not installed: {str(e).splitlines()[0]}") from None


def has_image(task: str) -> bool:
  """Whether ``gym_<task>`` has an image observation (makes the env but does not reset it)."""
  env = _make_gym(task)
  try:
    return any(is_image_space(space) for space in observation_spaces(env.observation_space).values())
  finally:
    env.close()


def make(task: str, config, seed: int = 0):
  """Builds ``gym_<task>`` from ``config.env.gym``."""
  c = config.env.gym
  if c.repeat < 1:
    raise UserError(f"env.gym.repeat must be at least 1, got {c.repeat}")
  env = GymnasiumEnvironment(_make_gym(task), size=tuple(c.size), resize=c.resize, seed=seed)
  return ActionRepeat(env, c.repeat) if c.repeat > 1 else env
