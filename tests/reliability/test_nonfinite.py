"""Numerical faults: a non-finite loss or gradient skips the update; a streak of them stops the run.

* ``DreamerAgent.train`` on a batch with a NaN reward or an infinite observation leaves every
  variable (networks, slow critic, optimizer state) unchanged and reports
  ``LossInfo.extra['nonfinite'] == 1.0``.
* The training loop stops after ``run.max_nonfinite_skips`` consecutive skipped updates with a
  one-line :class:`UserError`, without writing a checkpoint of the diverged state: the last good
  checkpoint stays the newest.
"""

import numpy as np
import pytest
import tensorflow as tf
from reliability_helpers import tree_digest
from tf_agents.specs import tensor_spec

from dreamer_tf.agent.dreamer_agent import DreamerAgent
from dreamer_tf.config import load_config
from dreamer_tf.envs import make_env
from dreamer_tf.errors import UserError

ENV = "bsuite_catch/0"


@pytest.fixture(scope="module")
def setup():
  config = load_config(ENV, ["debug"])
  env = make_env(ENV, config)
  try:
    time_step_spec = tensor_spec.from_spec(env.time_step_spec())
    action_spec = tensor_spec.from_spec(env.action_spec())
  finally:
    env.close()
  agent = DreamerAgent(time_step_spec, action_spec, config, seed=0)
  train = tf.function(agent.train)
  return config, agent, train, time_step_spec, action_spec


def make_batch(config, time_step_spec, action_spec, seed=0):
  """A replay batch ``[B, T, ...]`` in the step format with episodes of length 9."""
  rng = np.random.default_rng(seed)
  b, t = config.replay.batch_size, config.replay.batch_length
  obs = {
    key: rng.uniform(0, 1, (b, t, *spec.shape)).astype(np.float32)
    for key, spec in time_step_spec.observation.items()
    if not key.startswith("log_")
  }
  index = np.arange(t)[None].repeat(b, 0)
  is_first = index % 9 == 0
  is_last = index % 9 == 8
  return {
    "obs": obs,
    "action": rng.integers(0, int(action_spec.maximum) + 1, (b, t)).astype(np.int32),
    "reward": np.where(is_last, rng.choice([-1.0, 1.0], (b, t)), 0.0).astype(np.float32),
    "is_first": is_first,
    "is_last": is_last,
    "is_terminal": is_last,
  }


def snapshot(agent) -> list[np.ndarray]:
  variables = list(agent.world_model.variables) + list(agent.actor_critic.variables)
  for optimizer in agent.optimizers:
    variables += list(optimizer.variables)
  return [v.numpy().copy() for v in variables]


def test_finite_batch_changes_the_weights(setup):
  """The control: the detection below would notice an applied update."""
  config, agent, train, time_step_spec, action_spec = setup
  before = snapshot(agent)
  info = train(make_batch(config, time_step_spec, action_spec))
  assert np.isfinite(info.loss.numpy())
  assert float(info.extra.get("nonfinite", 0.0)) == 0.0
  after = snapshot(agent)
  assert any(not np.array_equal(a, b) for a, b in zip(before, after))


def nan_reward(batch):
  batch["reward"][1, 3] = np.nan


def inf_observation(batch):
  batch["obs"]["vector"][0, 5, 0] = np.inf


@pytest.mark.parametrize("poison", [nan_reward, inf_observation])
def test_nonfinite_batch_skips_the_update(setup, poison):
  config, agent, train, time_step_spec, action_spec = setup
  batch = make_batch(config, time_step_spec, action_spec, seed=1)
  poison(batch)
  before = snapshot(agent)
  info = train(batch)
  assert float(info.extra["nonfinite"]) == 1.0
  after = snapshot(agent)
  changed = [i for i, (a, b) in enumerate(zip(before, after)) if not np.array_equal(a, b, equal_nan=True)]
  assert not changed, f"{len(changed)} variables changed on a skipped update"
  # And training goes on normally afterwards.
  info = train(make_batch(config, time_step_spec, action_spec, seed=2))
  assert float(info.extra["nonfinite"]) == 0.0 and np.isfinite(info.loss.numpy())


@pytest.mark.slow
def test_streak_of_nonfinite_updates_stops_with_one_line_and_keeps_the_good_checkpoint(tmp_path):
  from dreamer_tf.training.loop import Trainer

  config = load_config(
    "atari_pong",
    ["debug"],
    ["env.atari.length=400", "run.max_nonfinite_skips=3", "run.log_every_secs=1"],  # Saves every 60 s.
  )
  trainer = Trainer(config, "atari_pong", tmp_path / "run")
  try:
    # Prefill 79 steps (4 x 16 windows + 15), then (95 - 79) * 32 / 64 = 8 good updates and a
    # checkpoint at step 95.
    trainer.run(steps=95)
    assert trainer.updates == 8
    checkpoints = tmp_path / "run" / "checkpoints"
    good = tree_digest(checkpoints)
    assert sorted(p.name for p in checkpoints.glob("ckpt-*"))[-1] == "ckpt-000000000095"
    # The critic diverges: every later actor and critic loss is NaN, while the policy (which does
    # not use the critic) still acts normally.
    for variable in trainer.agent.actor_critic.critic.variables:
      variable.assign(tf.fill(variable.shape, np.float32(np.nan)))
    with pytest.raises(UserError) as info:
      trainer.run(steps=600)
    message = str(info.value)
    assert "\n" not in message and "non-finite" in message.lower(), message
    assert trainer.agent_steps < 600 and trainer.updates <= 8 + 3 + 1  # Stops at the 3rd or 4th skip.
    assert tree_digest(checkpoints) == good, "a checkpoint of the diverged state was written"
  finally:
    trainer.close()
