"""Survives environment crashes: rebuild the environment and end the broken episode cleanly.

Long runs step an emulator or simulator millions of times; a rare crash there (an ALE
exception, a MuJoCo "physics state is invalid" error, a user environment's bug) should cost
one episode, not the run. :class:`FaultTolerantEnv` wraps one environment copy:

* an exception in ``step`` or ``reset`` is logged as a warning, the broken environment is closed
  (best effort) and rebuilt from its factory;
* a failed ``step`` returns a LAST step (a truncation: reward 0, discount 1, the last good
  observation) so the episode ends in the replay buffer as a time limit would end it, and the
  next ``step`` returns the rebuilt environment's FIRST step;
* that LAST step carries ``obs['log_env_fault'] = 1.0`` (0.0 on every other step), so the episode
  tracker can leave the broken episode out of the return statistics (``log_`` keys are logged,
  never modelled or stored in replay);
* after ``max_consecutive`` failures without a successful step in between, or
  ``max_in_window`` failures within ``window_steps`` steps, it raises a one-line
  :class:`~dreamer_tf.errors.UserError` naming the environment and the last exception:
  an environment that keeps failing is broken, and training on it would be pointless.

A :class:`~dreamer_tf.errors.UserError` raised by the environment (a bad setting, a
non-finite observation from :class:`~dreamer_tf.envs.check_finite.CheckFiniteObservations`)
is not a transient fault and passes through at once. See docs/troubleshooting.md.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

import numpy as np
from tf_agents.environments import py_environment
from tf_agents.specs import array_spec
from tf_agents.trajectories import time_step as ts

from dreamer_tf.errors import UserError

_log = logging.getLogger(__name__)

FAULT_KEY = "log_env_fault"


def describe(error: BaseException, limit: int = 200) -> str:
  """``TypeName: first line of the message``, at most ``limit`` characters."""
  lines = str(error).strip().splitlines()
  text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
  return text if len(text) <= limit else text[: limit - 3] + "..."


class EnvironmentFailedError(UserError):
  """An environment kept failing after being rebuilt; the message names it and the last error."""


class FaultTolerantEnv(py_environment.PyEnvironment):
  """Rebuilds a crashed environment and ends the broken episode with a truncation.

  Args:
    factory: Builds a fresh (unbatched, dict-observation) PyEnvironment; called once now and
      again after every failure.
    name: The environment's name for messages, e.g. ``atari_pong``.
    max_consecutive: Failures without a successful step in between before giving up.
    max_in_window: Failures within ``window_steps`` steps before giving up.
    window_steps: Length of that window in steps (``step`` and ``reset`` calls).
    fault_key: Observation key that marks the LAST step of a broken episode with 1.0 (and is 0.0
      on every other step); None adds no key.
  """

  def __init__(
    self,
    factory: Callable[[], py_environment.PyEnvironment],
    name: str,
    max_consecutive: int = 3,
    max_in_window: int = 10,
    window_steps: int = 100_000,
    fault_key: str | None = FAULT_KEY,
  ):
    super().__init__(handle_auto_reset=False)
    if max_consecutive < 1 or max_in_window < 1 or window_steps < 1:
      raise ValueError("max_consecutive, max_in_window and window_steps must be at least 1")
    self._factory = factory
    self._name = name
    self._max_consecutive = int(max_consecutive)
    self._max_in_window = int(max_in_window)
    self._window_steps = int(window_steps)
    self._fault_key = fault_key
    self._env = factory()
    spec = self._env.observation_spec()
    if fault_key is not None:
      if not isinstance(spec, dict):
        raise TypeError(f"FaultTolerantEnv needs a dict observation spec to add '{fault_key}'")
      if fault_key in spec:
        raise ValueError(f"the environment's observation already has a '{fault_key}' key")
      spec = dict(spec, **{fault_key: array_spec.ArraySpec((), np.float32, name=fault_key)})
    self._observation_spec = spec
    self._steps = 0
    self._consecutive = 0
    self._failures = collections.deque()  # Step indices of recent failures.
    self._total_failures = 0
    self._last_observation = None
    self._needs_reset = True

  def __getattr__(self, name: str):
    # Attributes of the wrapped environment (e.g. its settings) stay reachable, as through
    # TF-Agents' own wrappers.
    if name == "_env":
      raise AttributeError(name)
    return getattr(self._env, name)

  @property
  def failures(self) -> int:
    """Failures survived so far."""
    return self._total_failures

  @property
  def env(self) -> py_environment.PyEnvironment:
    """The current (possibly rebuilt) environment."""
    return self._env

  def observation_spec(self):
    return self._observation_spec

  def action_spec(self):
    return self._env.action_spec()

  def reward_spec(self):
    return self._env.reward_spec()

  def discount_spec(self):
    return self._env.discount_spec()

  def get_info(self):
    return self._env.get_info()

  def get_state(self):
    return self._env.get_state()

  def set_state(self, state):
    return self._env.set_state(state)

  def render(self, mode: str = "rgb_array"):
    return self._env.render(mode)

  def close(self):
    self._env.close()

  # Stepping.

  def _reset(self):
    step = self._guarded_reset()
    self._needs_reset = False
    return step

  def _step(self, action):
    if self._needs_reset:
      return self._reset()
    self._steps += 1
    try:
      step = self._env.step(action)
    except UserError:
      raise
    except Exception as e:  # Any crash of third-party environment code.
      self._record_failure("step", e)
      self._rebuild()
      self._needs_reset = True
      return self._fault_step()
    self._consecutive = 0
    return self._mark(step, 0.0)

  def _guarded_reset(self):
    while True:
      self._steps += 1
      try:
        step = self._env.reset()
      except UserError:
        raise
      except Exception as e:
        self._record_failure("reset", e)
        self._rebuild()
        continue
      return self._mark(step, 0.0)

  # Faults.

  def _record_failure(self, where: str, error: Exception) -> None:
    self._consecutive += 1
    self._total_failures += 1
    self._failures.append(self._steps)
    while self._failures and self._failures[0] <= self._steps - self._window_steps:
      self._failures.popleft()
    if self._consecutive >= self._max_consecutive:
      raise EnvironmentFailedError(
        f"environment {self._name} failed {self._consecutive} times in a row (last in {where}: "
        f"{describe(error)}); fix or reinstall it, see docs/troubleshooting.md"
      ) from error
    if len(self._failures) >= self._max_in_window:
      raise EnvironmentFailedError(
        f"environment {self._name} failed {len(self._failures)} times within {self._window_steps} steps "
        f"(last in {where}: {describe(error)}); fix or reinstall it, see docs/troubleshooting.md"
      ) from error
    _log.warning(
      "Environment %s raised in %s (%s); rebuilding it (failure %d in a row, %d in total)",
      self._name,
      where,
      describe(error),
      self._consecutive,
      self._total_failures,
    )

  def _rebuild(self) -> None:
    broken = self._env
    try:
      broken.close()
    except Exception as e:  # A crashed environment may fail to close too.
      _log.debug("Closing the broken environment %s failed: %s", self._name, describe(e))
    while True:
      try:
        self._env = self._factory()
      except UserError:
        raise
      except Exception as e:
        self._record_failure("construction", e)
        continue
      return

  def _fault_step(self):
    """A truncation that ends the broken episode: last good observation, reward 0, discount 1."""
    observation = self._last_observation
    if observation is None:  # Unreachable after a reset; kept for safety.
      observation = {k: np.zeros(s.shape, s.dtype) for k, s in self._observation_spec.items()}
    reward = np.zeros(self.reward_spec().shape, self.reward_spec().dtype)
    discount = np.ones(self.discount_spec().shape, self.discount_spec().dtype)
    step = ts.truncation(observation, reward, discount)
    return self._mark(step, 1.0)

  def _mark(self, step, fault: float):
    if self._fault_key is None:
      self._last_observation = step.observation
      return step
    observation = dict(step.observation)
    observation[self._fault_key] = np.asarray(fault, np.float32)
    self._last_observation = observation
    return step._replace(observation=observation)
