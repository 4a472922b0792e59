"""DreamerStepObserver: TF-Agents driver trajectories -> the replay step format."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from tf_agents.trajectories import time_step as ts

from dreamer_tf.errors import UserError
from dreamer_tf.replay.spec import LATENT_KEY


class DreamerStepObserver:
  """Turns the batched ``Trajectory`` objects of a TF-Agents driver into replay steps.

  A driver builds ``trajectory.from_transition(time_step_t, action_step_t, time_step_t+1)``:
  its observation, step type and action belong to step t, but its reward and discount to step
  t+1. The step format (docs/CONTRIBUTING.md) wants the reward received on arriving at step t,
  so this observer keeps the previous trajectory's reward and discount per environment and
  stores, for step t of every environment:

  * ``obs``: the observation without ``log_`` keys, cast to the replay spec,
  * ``action``: the action taken at step t,
  * ``reward``: the reward received on arriving at step t (0 on a FIRST step),
  * ``is_first`` / ``is_last``: step type FIRST / LAST,
  * ``is_terminal``: LAST with discount 0 (true termination, not a time limit),
  * ``latent`` (only when the replay spec has it, ``replay.context``): the collect policy's
    posterior state after observing step t, from the trajectory's ``policy_info["latent"]``
    (:class:`~dreamer_tf.agent.dreamer_policy.DreamerPolicy` with ``emit_latent``); zeros for
    steps of a policy without it (the random prefill), the RSSM's zero initial state.

  Use as ``PyDriver(env, policy, observers=[DreamerStepObserver(replay)])``. Unbatched
  trajectories (an unbatched environment) are treated as a batch of one.
  """

  def __init__(self, replay):
    """Creates the observer.

    Args:
      replay: A buffer with ``add_batch(step)`` and a step-format ``data_spec``
        (e.g. :class:`SequenceReplayBuffer`).
    """
    self._replay = replay
    spec = replay.data_spec
    self._obs_dtypes = {k: s.dtype.as_numpy_dtype for k, s in spec["obs"].items()}
    self._action_dtype = spec["action"].dtype.as_numpy_dtype
    self._latent_shapes = {k: tuple(s.shape.as_list()) for k, s in spec.get(LATENT_KEY, {}).items()}
    self._prev_reward = None
    self._prev_discount = None

  def reset(self) -> None:
    """Forgets the pending reward/discount (call when the environments are reset by hand)."""
    self._prev_reward = None
    self._prev_discount = None

  def __call__(self, traj) -> None:
    step_type = np.asarray(traj.step_type)
    batched = step_type.ndim > 0
    expand = (lambda x: np.asarray(x)) if batched else (lambda x: np.asarray(x)[None])
    step_type = expand(step_type)
    num_envs = len(step_type)
    first = step_type == ts.StepType.FIRST
    last = step_type == ts.StepType.LAST
    if self._prev_reward is None or len(self._prev_reward) != num_envs:
      self._prev_reward = np.zeros(num_envs, np.float32)
      self._prev_discount = np.ones(num_envs, np.float32)
    reward = np.where(first, 0.0, self._prev_reward).astype(np.float32)
    discount = np.where(first, 1.0, self._prev_discount).astype(np.float32)
    step = {
      "obs": self._observation(traj.observation, expand),
      "action": expand(traj.action).astype(self._action_dtype),
      "reward": reward,
      "is_first": first,
      "is_last": last,
      "is_terminal": last & (discount == 0),
    }
    if self._latent_shapes:
      step[LATENT_KEY] = self._latent(traj.policy_info, num_envs)
    self._replay.add_batch(step)
    self._prev_reward = expand(traj.reward).astype(np.float32).reshape(num_envs)
    self._prev_discount = expand(traj.discount).astype(np.float32).reshape(num_envs)

  def _latent(self, policy_info, num_envs: int) -> dict:
    latent = policy_info.get(LATENT_KEY) if isinstance(policy_info, Mapping) else None
    if latent is None:
      return {k: np.zeros((num_envs, *shape), np.float32) for k, shape in self._latent_shapes.items()}
    return {k: np.asarray(latent[k], np.float32).reshape(num_envs, *shape) for k, shape in self._latent_shapes.items()}

  def _observation(self, observation, expand) -> dict:
    if not isinstance(observation, Mapping):
      if len(self._obs_dtypes) != 1:
        raise UserError(
          "DreamerStepObserver got a single-array observation but the replay spec has observation "
          f"keys {sorted(self._obs_dtypes)}: make the environment return a dict of observations"
        )
      (key,) = self._obs_dtypes
      observation = {key: observation}
    obs = {}
    for key, value in observation.items():
      if key.startswith("log_"):
        continue
      if key not in self._obs_dtypes:
        raise UserError(
          f"observation key '{key}' is not in the replay spec {sorted(self._obs_dtypes)}: build the "
          "replay spec with step_spec(env.observation_spec(), env.action_spec())"
        )
      obs[key] = expand(value).astype(self._obs_dtypes[key], copy=False)
    return obs
