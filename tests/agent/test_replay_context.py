"""The current generation's replay context (``replay.context=1``): latents stored per step, each window
of 1 + T steps starts from the stored latent of its first step, and every update writes its latents back."""

import functools

import numpy as np
import pytest
import tensorflow as tf
from agent_testlib import random_batch, with_replay_context
from tf_agents.trajectories import time_step as ts

from dreamer_tf.agent.dreamer_agent import DreamerAgent, time_step_spec_from
from dreamer_tf.main import resolve_config
from dreamer_tf.replay import DreamerStepObserver, SequenceReplayBuffer, replay_step_spec
from dreamer_tf.training.learner import Learner
from dreamer_tf.training.loop import Trainer

ENV = "gym_CartPole-v1"
TINY = ["model.deter=32", "model.units=32", "model.stoch=4", "model.classes=4", "replay.batch_length=8"]


def _config(*overrides):
  quiet = ["run.log_every_secs=1000", "run.checkpoint_every_secs=1000"]
  return resolve_config(ENV, ["nature", "size1m", "debug"], [*TINY, *quiet, *overrides])


@pytest.fixture(scope="module")
def agent_and_specs():
  from tf_agents.specs import tensor_spec

  config = _config()
  obs_spec = {"vector": tf.TensorSpec([4], tf.float32, "vector")}
  action_spec = tensor_spec.BoundedTensorSpec([], tf.int32, 0, 1, "action")
  agent = DreamerAgent(time_step_spec_from(obs_spec), action_spec, config, seed=3)
  return agent, obs_spec, action_spec, config


def _context_batch(obs_spec, action_spec, config, seed=0):
  """A random batch of 1 + T steps with random stored latents and window ids."""
  batch, length = config.replay.batch_size, config.replay.batch_length + config.replay.context
  data = random_batch(obs_spec, action_spec, batch, length, seed)
  data["is_first"][:] = False
  data["is_first"][:, 0] = True  # The replay forces it on the window's first step: the context step.
  return with_replay_context(data, config, seed)


def _model_loss(agent, batch):
  data, start, _ = agent.split_context(agent.preprocess(tf.nest.map_structure(tf.constant, batch)))
  loss, post, _ = agent.world_model.loss(data, tf.constant([5, 6]), start)
  return float(loss), post


def test_the_update_starts_from_the_stored_latent_of_the_context_step_and_trains_on_the_rest(agent_and_specs):
  agent, obs_spec, action_spec, config = agent_and_specs
  batch = _context_batch(obs_spec, action_spec, config)
  loss, post = _model_loss(agent, batch)
  assert post["deter"].shape[1] == config.replay.batch_length  # The context step is not trained on.

  def changed(edit):
    other = tf.nest.map_structure(np.copy, batch)
    edit(other)
    return _model_loss(agent, other)[0]

  # The stored latent of step 0 and the action taken there start the posterior.
  assert changed(lambda b: b["latent"]["deter"].__setitem__((slice(None), 0), 0.0)) != pytest.approx(loss)
  assert changed(lambda b: b["action"].__setitem__((slice(None), 0), 1 - b["action"][:, 0])) != pytest.approx(loss)
  # Step 0's observation, reward and flags are context only, and the later stored latents are not read.
  assert changed(lambda b: b["obs"]["vector"].__setitem__((slice(None), 0), 9.0)) == pytest.approx(loss, rel=1e-6)
  assert changed(lambda b: b["reward"].__setitem__((slice(None), 0), 9.0)) == pytest.approx(loss, rel=1e-6)
  assert changed(lambda b: b["latent"]["deter"].__setitem__((slice(None), slice(1, None)), 0.0)) == pytest.approx(
    loss, rel=1e-6
  )

  # An episode that starts at step 1 starts from the initial state: step 0's latent no longer matters.
  def new_episode(b):
    b["is_first"][:, 1] = True

  def new_episode_other_latent(b):
    new_episode(b)
    b["latent"]["deter"][:, 0] = 0.0

  assert changed(new_episode) == pytest.approx(changed(new_episode_other_latent), rel=1e-6)


def test_the_update_returns_its_posterior_latents_and_ids_for_the_write_back(agent_and_specs):
  agent, obs_spec, action_spec, config = agent_and_specs
  batch = _context_batch(obs_spec, action_spec, config, seed=4)
  wm = agent.world_model
  weights = [v.numpy() for v in wm.variables]
  rng_state = agent._rng.state.numpy()
  info = agent.train(tf.nest.map_structure(tf.constant, batch))
  written = info.extra["replay"]
  np.testing.assert_array_equal(written["ids"].numpy(), batch["replay_id"])
  # The same posterior, recomputed from the parameters and the seed the update used.
  for variable, value in zip(wm.variables, weights):
    variable.assign(value)
  agent._rng.reset(rng_state)
  seeds = agent._rng.make_seeds(3)
  data, start, _ = agent.split_context(agent.preprocess(tf.nest.map_structure(tf.constant, batch)))
  post, _ = wm.observe(data, seeds[:, 0], start)
  for key in ("deter", "stoch"):
    assert written[f"latent/{key}"].shape == post[key].shape
    np.testing.assert_allclose(written[f"latent/{key}"].numpy(), post[key].numpy(), rtol=1e-5, atol=1e-6)


def test_the_collect_policy_emits_its_posterior_and_the_observer_stores_it(agent_and_specs):
  agent, obs_spec, action_spec, config = agent_and_specs
  policy = agent.collect_policy
  step = ts.restart({"vector": tf.random.normal([2, 4])}, batch_size=2)
  action_step = policy.action(step, policy.get_initial_state(2))
  latent = action_step.info["latent"]
  np.testing.assert_array_equal(latent["deter"].numpy(), action_step.state["deter"].numpy())
  np.testing.assert_array_equal(latent["stoch"].numpy(), action_step.state["stoch"].numpy())
  assert agent.policy.info_spec == ()  # The greedy (evaluation, export) policy writes nothing.

  spec = replay_step_spec(config, obs_spec, action_spec)
  replay = SequenceReplayBuffer(spec, batch_size=2, capacity=100)
  observer = DreamerStepObserver(replay)
  from tf_agents.trajectories import trajectory

  next_step = ts.transition({"vector": tf.zeros([2, 4])}, tf.zeros([2]))
  observer(tf.nest.map_structure(np.asarray, trajectory.from_transition(step, action_step, next_step)))
  random_step = action_step._replace(info=())  # The random prefill policy has no latent: zeros.
  observer(tf.nest.map_structure(np.asarray, trajectory.from_transition(next_step, random_step, next_step)))
  stored = replay._gather_all()["latent"]
  np.testing.assert_array_equal(stored["deter"].numpy()[:, 0], latent["deter"].numpy())
  np.testing.assert_array_equal(stored["stoch"].numpy()[:, 0], latent["stoch"].numpy())
  assert not stored["deter"].numpy()[:, 1].any() and not stored["stoch"].numpy()[:, 1].any()


def test_write_back_changes_the_next_samples_initial_latent(agent_and_specs):
  agent, obs_spec, action_spec, config = agent_and_specs
  length, context = config.replay.batch_length, config.replay.context
  spec = replay_step_spec(config, obs_spec, action_spec)
  replay = SequenceReplayBuffer(spec, batch_size=1, capacity=1000, seed=0)
  steps = random_batch(obs_spec, action_spec, 2, 40, seed=7)
  for t in range(40):
    step = tf.nest.map_structure(lambda x, t=t: x[:1, t], steps)
    step["latent"] = {k: np.full((1, *s.shape), 0.5, np.float32) for k, s in spec["latent"].items()}
    replay.add_batch(step)
  before = replay._gather_all()["latent"]["deter"].numpy()[0]
  learner = Learner(
    agent,
    tf.distribute.get_strategy(),
    lambda: replay.as_dataset(4, length + context, with_ids=True),
    write_back=functools.partial(replay.update, offset=context),
  )
  learner.train_once()
  starts = learner.last_batch["replay_id"].numpy() & ((1 << 40) - 1)
  after = replay._gather_all()["latent"]["deter"].numpy()[0]
  written = np.zeros(40, bool)
  for s in starts:
    written[s + context : s + context + length] = True
  assert not np.allclose(after[written], 0.5)  # Every trained step holds the update's posterior now ...
  np.testing.assert_array_equal(after[~written], before[~written])  # ... and nothing else changed.
  # A window that starts at a trained step starts from the written-back latent.
  sample, info = replay._sample_flat(64, length + context)
  trained = np.nonzero(written[info.ids & ((1 << 40) - 1)])[0]
  assert trained.size, "no sampled window started at a trained step"
  i = trained[0]
  start = int(info.ids[i] & ((1 << 40) - 1))
  np.testing.assert_array_equal(sample["latent/deter"][i, 0], after[start])
  assert not np.allclose(sample["latent/deter"][i, 0], before[start])


def test_a_run_writes_latents_back_and_a_resumed_run_samples_the_same_latents(tmp_path):
  config = _config()
  trainer = Trainer(config, ENV, tmp_path / "run")
  try:
    trainer.run(steps=120)
    assert trainer.updates > 0
    saved = trainer.replay._gather_all()["latent"]
    assert (
      np.abs(saved["deter"].numpy()).sum(-1).astype(bool).mean() > 0.9
    )  # The agent acted (and wrote) from the start.
    trainer.save()  # run() saved at its end already: nothing changed since, and nothing is written again.
  finally:
    trainer.close()
  resumed = Trainer(config, ENV, tmp_path / "run")
  try:
    assert resumed.restore()
    restored = resumed.replay._gather_all()["latent"]
    for key in ("deter", "stoch"):
      np.testing.assert_array_equal(restored[key].numpy(), saved[key].numpy())
    resumed.run(steps=140)  # Training goes on from the restored latents (1 + T windows, write-back).
    assert resumed.updates > trainer.updates
  finally:
    resumed.close()
