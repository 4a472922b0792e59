"""The random prefill of the 2023 code: a uniformly random policy until replay holds one batch."""

import numpy as np
import pytest
from tf_agents.policies import random_py_policy

from dreamer_tf.main import resolve_config
from dreamer_tf.replay import prefill_steps
from dreamer_tf.training.loop import Trainer

ENV = "gym_Pendulum-v1"  # Continuous actions: a random action sequence cannot match by chance.


def _config(*overrides):
  return resolve_config(ENV, ["debug"], ["run.log_every_secs=1000", "run.checkpoint_every_secs=1000", *overrides])


def _random_actions(trainer, count):
  """The actions a fresh RandomPyPolicy with the run's seed takes in ``count`` single-env steps."""
  env = trainer.env
  policy = random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(), seed=trainer.config.run.seed)
  time_step = env.reset()  # Only its shape matters: the random policy ignores observations.
  return np.concatenate([policy.action(time_step).action for _ in range(count)])


def _stored_actions(trainer):
  return trainer.replay._gather_all()["action"].numpy()[0]  # [stream_length, A] of the one env


@pytest.mark.parametrize(
  ("overrides", "expected"),
  [
    ((), 4 * 16 + 15),  # One env: its stream of n steps holds n - 15 windows of 16 steps.
    (("run.train_start=100",), 100 + 15),
    (("replay.batch_size=8", "replay.batch_length=32"), 256 + 31),
    (("run.envs=4",), 4 * (16 + 15)),  # 4 streams of 31 steps hold 4 x 16 windows.
    (("run.envs=3",), 3 * (22 + 15)),  # ceil(64 / 3) = 22 windows per stream.
    (("run.envs=4", "replay.batch_size=16", "replay.batch_length=64"), 4 * (256 + 63)),  # 1,276
    # The replay context: windows of 1 + 16 steps, still 4 x 16 of them (the current code's rule).
    (("replay.context=1",), 4 * 16 + 16),
  ],
)
def test_prefill_steps_is_one_batch_of_windows_or_train_start(overrides, expected):
  assert prefill_steps(_config(*overrides)) == expected


def test_random_policy_fills_one_batch_then_the_actor_trains_and_a_resume_does_not_prefill(tmp_path):
  config = _config()
  prefill = prefill_steps(config)  # 79 = 4 x 16 windows + 15: the debug preset, one env
  trainer = Trainer(config, ENV, tmp_path / "run")
  try:
    assert not trainer.training_started
    trainer.run(steps=prefill)
    # The prefill: every step so far came from the random policy, and training starts right after it.
    actions = _stored_actions(trainer)
    random_actions = _random_actions(trainer, prefill + 32)
    np.testing.assert_array_equal(actions, random_actions[:prefill])
    assert trainer.training_started and int(trainer.counters.train_start_step.numpy()) == prefill
    assert trainer.updates == 0
    trainer.run(steps=prefill + 16)
    # The agent's collect policy acts now, and the train ratio counts from the end of the prefill:
    # 16 steps * ratio 32 / 64 replayed steps per update.
    actions = _stored_actions(trainer)
    assert len(actions) == prefill + 16
    assert not np.any(np.all(actions[prefill:] == random_actions[prefill : prefill + 16], axis=-1))
    assert trainer.updates == 8 and trainer.achieved_ratio() == pytest.approx(32.0)
  finally:
    trainer.close()

  resumed = Trainer(config, ENV, tmp_path / "run")
  try:
    resumed.restore()
    assert resumed.training_started and resumed.updates == 8
    resumed.run(steps=prefill + 32)
    actions = _stored_actions(resumed)
    assert len(actions) == prefill + 32
    # No second prefill: the random policy's sequence from its start is not replayed.
    assert not np.any(np.all(actions[prefill + 16 :] == random_actions[:16], axis=-1))
    assert resumed.updates == 16
  finally:
    resumed.close()


def test_a_run_stopped_during_the_prefill_resumes_it(tmp_path):
  config = _config()
  trainer = Trainer(config, ENV, tmp_path / "run")
  try:
    trainer.run(steps=40)
    assert not trainer.training_started and trainer.updates == 0
  finally:
    trainer.close()
  resumed = Trainer(config, ENV, tmp_path / "run")
  try:
    resumed.restore()
    resumed.run(steps=prefill_steps(config) + 16)
    # The prefill ended at step 79 (4 x 16 windows + 15) in the resumed run; 16 steps * 32 / 64.
    assert int(resumed.counters.train_start_step.numpy()) == 79 and resumed.updates == 8
  finally:
    resumed.close()
