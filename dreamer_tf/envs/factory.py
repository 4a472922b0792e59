"""The environment factory behind ``--env=NAME``: ``<suite>_<task>`` -> TF-Agents PyEnvironment.

Suites (one module each): ``atari_<game>``, ``atari100k_<game>``, ``dmc_<domain>_<task>``,
``dmcproprio_<domain>_<task>``, ``crafter_reward`` / ``crafter_noreward``, ``gym_<id>``
(including ``gym_<module>:<EnvId>``), ``bsuite_<id>`` and ``procgen_<game>``.
Suite modules are imported lazily so that a missing optional package only matters
for its own suite.
"""

from __future__ import annotations

import difflib
import functools
import itertools

from dreamer_tf.errors import UserError

SUITES = ("atari", "atari100k", "dmc", "dmcproprio", "crafter", "gym", "bsuite", "procgen")

_EXAMPLES = {
  "atari": "atari_pong",
  "atari100k": "atari100k_pong",
  "dmc": "dmc_walker_walk",
  "dmcproprio": "dmcproprio_walker_walk",
  "crafter": "crafter_reward",
  "gym": "gym_CartPole-v1",
  "bsuite": "bsuite_catch/0",
  "procgen": "procgen_coinrun",
}


def parse_name(name: str) -> tuple[str, str]:
  """Splits ``atari_ms_pacman`` into (``atari``, ``ms_pacman``); UserError for an unknown suite."""
  suite, _, task = str(name).partition("_")
  if suite not in SUITES or not task:
    examples = ", ".join(_EXAMPLES[s] for s in SUITES)
    if suite in SUITES:
      raise UserError(f"--env={name} names no task; use {suite}_<task>, e.g. {_EXAMPLES[suite]}")
    close = difflib.get_close_matches(suite, SUITES, n=1)
    hint = f"did you mean '{close[0]}_{task}'? " if close else ""
    raise UserError(
      f"unknown environment suite '{suite}' in --env={name}; {hint}valid suites: {', '.join(SUITES)} (e.g. {examples})"
    )
  return suite, task


def make_env(name: str, config, seed: int = 0):
  """Builds one environment as a TF-Agents PyEnvironment.

  Args:
    name: ``<suite>_<task>``, e.g. ``atari_pong`` or ``gym_mypackage.envs:MyEnv-v0``.
    config: The resolved :class:`dreamer_tf.config.Config`; its ``env.<suite>`` block holds
      the preprocessing settings.
    seed: Seeds the environment (different seeds for different copies).

  Returns:
    An unbatched PyEnvironment with a dict observation spec and int32 scalar (discrete)
    or float32 ``[A]`` in [-1, 1] (continuous) action spec. It resets itself on the step
    after a LAST step. It survives crashes of the environment (``FaultTolerantEnv``: the
    broken episode ends with a truncation marked ``obs['log_env_fault'] = 1``) and rejects
    non-finite observations and rewards (``CheckFiniteObservations``); see
    docs/troubleshooting.md.

  Raises:
    UserError: unknown suite or task, or a missing optional package.
  """
  suite, task = parse_name(name)
  from dreamer_tf.envs.check_finite import CheckFiniteObservations
  from dreamer_tf.envs.fault_tolerance import FaultTolerantEnv

  rebuilds = itertools.count()

  def build():
    # A rebuilt copy gets a fresh seed, so that it does not replay the episodes of the first one.
    copy_seed = seed + 100_003 * next(rebuilds)
    return CheckFiniteObservations(_make_suite_env(suite, task, config, copy_seed), name)

  # The first build raises unknown tasks and missing packages as they are (no retries).
  env = FaultTolerantEnv(build, name)
  _log_mujoco_backend(suite, task)
  return env


def uses_mujoco(suite: str, task: str) -> bool:
  """Whether ``<suite>_<task>`` simulates with MuJoCo (DeepMind Control, gymnasium's MuJoCo tasks)."""
  if suite in ("dmc", "dmcproprio"):
    return True
  if suite != "gym":
    return False
  import gymnasium

  try:
    entry_point = gymnasium.spec(task.split(":")[-1]).entry_point
  except gymnasium.error.Error:
    return False
  return "mujoco" in str(entry_point).lower()


def _log_mujoco_backend(suite: str, task: str) -> None:
  """Names MuJoCo's rendering backend (once per process) when a MuJoCo environment is made."""
  if uses_mujoco(suite, task):
    from dreamer_tf import _quiet

    _quiet.log_mujoco_backend()


def _make_suite_env(suite: str, task: str, config, seed: int):
  """Builds the suite's environment, without the fault-tolerance wrappers."""
  if suite in ("atari", "atari100k"):
    from dreamer_tf.envs import atari

    return atari.make(task, config, seed, prefix=suite)
  if suite in ("dmc", "dmcproprio"):
    from dreamer_tf.envs import dmc

    return dmc.make(task, config, seed, proprio_only=suite == "dmcproprio")
  if suite == "crafter":
    from dreamer_tf.envs import crafter

    return crafter.make(task, config, seed)
  if suite == "gym":
    from dreamer_tf.envs import gym

    return gym.make(task, config, seed)
  if suite == "bsuite":
    from dreamer_tf.envs import bsuite

    return bsuite.make(task, config, seed)
  from dreamer_tf.envs import procgen

  return procgen.make(task, config, seed)


def _make_from_dict(name: str, config_dict: dict, seed: int):
  """Picklable constructor for ParallelPyEnvironment subprocesses."""
  from dreamer_tf.config import Config

  return make_env(name, Config(config_dict), seed)


def make_batched_env(name: str, config, num_envs: int, seed: int = 0, parallel: bool = False):
  """Builds ``num_envs`` copies (seeds ``seed``, ``seed + 1``, ...) as one batched PyEnvironment.

  Args:
    name: As for :func:`make_env`.
    config: The resolved config.
    num_envs: Number of copies (the batch size).
    seed: Seed of the first copy.
    parallel: Run each copy in its own process (``ParallelPyEnvironment``); the program
      must then start under ``tf_agents.system.system_multiprocessing.handle_main``.

  Returns:
    A PyEnvironment with ``batch_size == num_envs``: a ``BatchedPyEnvironment`` that steps the
    copies one after another, or a ``ParallelPyEnvironment`` with ``parallel``.
  """
  if num_envs < 1:
    raise UserError(f"the number of environments must be at least 1, got {num_envs}")
  from tf_agents.environments import batched_py_environment, parallel_py_environment

  if parallel:
    _log_mujoco_backend(*parse_name(name))  # The copies are made in subprocesses.
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    constructors = [functools.partial(_make_from_dict, name, data, seed + i) for i in range(num_envs)]
    return parallel_py_environment.ParallelPyEnvironment(constructors, start_serially=False)
  envs = [make_env(name, config, seed + i) for i in range(num_envs)]
  # Stepped in turn on the calling thread: MuJoCo's EGL contexts belong to the thread that first
  # renders, so a thread pool breaks their cleanup; use parallel=True for real parallelism.
  return batched_py_environment.BatchedPyEnvironment(envs, multithreading=False)


def has_image_observation(name: str, config) -> bool:
  """Whether ``--env=name`` yields an image observation (``obs['image']`` or any image key).

  Used to choose the ``dmc_vision`` or ``dmc_proprio`` config block for ``gym_`` environments.
  Only ``gym_`` environments are constructed (without a reset) to look at their space.
  """
  suite, task = parse_name(name)
  if suite in ("atari", "atari100k", "crafter", "procgen"):
    return True
  if suite == "dmcproprio":
    return False
  if suite == "dmc":
    return bool(config.env.dmc.image)
  if suite == "bsuite":
    return False
  from dreamer_tf.envs import gym

  return gym.has_image(task)


def tensor_specs(py_env):
  """``(time_step_spec, action_spec)`` of a PyEnvironment as TensorSpecs (what an agent is built from)."""
  from tf_agents.specs import tensor_spec

  return tensor_spec.from_spec(py_env.time_step_spec()), tensor_spec.from_spec(py_env.action_spec())


def env_tensor_specs(name: str, config):
  """Builds ``--env=name`` once and returns its :func:`tensor_specs`, closing the environment."""
  env = make_env(name, config, seed=0)
  try:
    return tensor_specs(env)
  finally:
    env.close()
