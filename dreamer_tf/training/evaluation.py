"""Evaluation: episodes of a policy on one environment, and the run's evaluation policy."""

from __future__ import annotations

from tf_agents.policies import py_tf_eager_policy

from dreamer_tf import envs as envs_lib
from dreamer_tf.agent.dreamer_policy import DreamerPolicy


def evaluate(policy, env, episodes: int, max_steps: int = 10**7) -> list[dict]:
  """Runs ``episodes`` episodes of ``policy`` (a ``TFPolicy``) on a single ``env``; returns their stats."""
  py_policy = py_tf_eager_policy.PyTFEagerPolicy(policy, use_tf_function=True, batch_time_steps=True)
  tracker = envs_lib.EpisodeTracker()
  results = []
  time_step = env.reset()
  tracker.update(time_step)
  state = py_policy.get_initial_state(1)
  steps = 0
  while len(results) < episodes and steps < max_steps:
    action_step = py_policy.action(time_step, state)
    state = action_step.state
    time_step = env.step(action_step.action)
    steps += 1
    results += tracker.update(time_step)
    if time_step.is_last():
      time_step = env.reset()
      tracker.update(time_step)
  return results


def eval_policy(agent, config) -> DreamerPolicy:
  """A fresh evaluation policy: it samples from the actor, or takes its mode with ``run.eval_greedy``.

  Sampling is the default, as in the 2023 code (its ``eval`` mode samples). The policy's random
  stream (seed ``run.seed + 3``) is the same at every evaluation.
  """
  return DreamerPolicy(
    agent.time_step_spec,
    agent.action_spec,
    agent.world_model,
    agent.actor_critic,
    greedy=bool(config.run.eval_greedy),
    seed=config.run.seed + 3,
    name="eval_policy",
  )
