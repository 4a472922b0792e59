"""Atari: specs, max-pooling, summed rewards, sticky actions, termination vs truncation."""

import numpy as np
import pytest
from env_checks import check_action_spec, check_step, run_until_last
from tf_agents.environments import utils
from tf_agents.trajectories import time_step as ts

from dreamer_tf.config import load_config
from dreamer_tf.envs import make_env
from dreamer_tf.envs.atari import AtariEnvironment
from dreamer_tf.errors import UserError


@pytest.fixture(scope="module")
def pong():
  env = make_env("atari_pong", load_config("atari_pong"), seed=3)
  yield env
  env.close()


def test_paper_settings_and_specs(pong):
  check_action_spec(pong)
  assert pong.action_spec().maximum == 17  # All 18 actions.
  assert pong.observation_spec()["image"].shape == (64, 64, 3)
  first = pong.reset()
  assert first.step_type == ts.StepType.FIRST and first.reward == 0
  check_step(pong, first)
  for action in range(5):
    check_step(pong, pong.step(np.int32(action)))
  assert pong._sticky_prob == 0.25 and pong._length == 108000 and pong._lives_mode == "unused"


def test_atari100k_uses_minimal_actions_without_sticky():
  env = make_env("atari100k_pong", load_config("atari100k_pong"))
  assert env.action_spec().maximum == 5  # Pong's 6 needed actions.
  assert env.action_names[0] == "NOOP"
  env.reset()
  for _ in range(20):
    env.step(np.int32(2))
    assert env.last_frame_actions == [env._action_set[2]] * 4


def test_max_pooling_and_summed_reward_over_repeats():
  # Without sticky actions ALE is deterministic: a repeat-4 env must see the max of the
  # last two of every four frames of a repeat-1 env, and the sum of their rewards.
  kwargs = dict(size=(210, 160), sticky=False, actions="needed", seed=0)
  env4 = AtariEnvironment("ms_pacman", repeat=4, **kwargs)
  env1 = AtariEnvironment("ms_pacman", repeat=1, **kwargs)
  first4, first1 = env4.reset(), env1.reset()
  np.testing.assert_array_equal(first4.observation["image"], first1.observation["image"])
  rng = np.random.default_rng(0)
  total = 0.0
  for _ in range(150):  # The game starts moving after ~250 frames.
    action = np.int32(rng.integers(env4.action_spec().maximum + 1))
    step4 = env4.step(action)
    frames, rewards = [], []
    for _ in range(4):
      step1 = env1.step(action)
      frames.append(step1.observation["image"])
      rewards.append(float(step1.reward))
    np.testing.assert_array_equal(step4.observation["image"], np.maximum(frames[-2], frames[-1]))
    assert float(step4.reward) == pytest.approx(sum(rewards))
    total += float(step4.reward)
  assert total > 0  # Ms. Pac-Man scores by eating dots, so the sums were really checked.


def test_resize_and_gray():
  env = AtariEnvironment("pong", size=(64, 64), gray=True, resize="bilinear", seed=0)
  image = env.reset().observation["image"]
  assert image.shape == (64, 64, 1) and image.dtype == np.uint8
  assert image.std() > 0


def test_sticky_action_semantics():
  # Each emulator frame repeats the previous frame's action with probability 0.25, so
  # within one agent step the frames run [previous]*k + [chosen]*(4 - k), k ~ Geometric.
  env = AtariEnvironment("pong", sticky=True, sticky_prob=0.25, seed=1)
  env.reset()
  rng = np.random.default_rng(1)
  previous = env._noop
  sticky_first = changes = 0
  for _ in range(400):
    chosen = env._action_set[int(rng.integers(18))]
    env.step(np.int32(env._action_set.index(chosen)))
    frames = env.last_frame_actions
    k = next((i for i, a in enumerate(frames) if a != previous), len(frames)) if chosen != previous else 0
    assert frames == [previous] * k + [chosen] * (len(frames) - k), (previous, chosen, frames)
    if chosen != previous:
      changes += 1
      sticky_first += frames[0] == previous
    previous = frames[-1]
  assert abs(sticky_first / changes - 0.25) < 0.07, sticky_first / changes


def test_seeded_sticky_envs_are_reproducible():
  images = []
  for _ in range(2):
    env = AtariEnvironment("pong", sticky=True, noops=30, seed=7)
    env.reset()
    steps = [env.step(np.int32(i % 18)).observation["image"] for i in range(50)]
    images.append(np.stack(steps))
  np.testing.assert_array_equal(images[0], images[1])


def test_time_limit_truncates_with_discount_one():
  env = AtariEnvironment("pong", length=40, seed=0)  # 40 frames = 10 agent steps.
  env.reset()
  count, last = run_until_last(env, lambda: np.int32(0), 20)
  assert count == 10 and last.discount == 1.0
  assert env.step(np.int32(0)).step_type == ts.StepType.FIRST  # Resets itself.


def test_noops_are_drawn_below_the_limit_and_not_counted_in_the_time_limit():
  # The 2023 code draws randint(noops) no-op frames: 0 .. noops - 1.
  env = AtariEnvironment("pong", noops=3, seed=0)
  counts = set()
  for _ in range(40):
    env.reset()
    counts.add(env._ale.getEpisodeFrameNumber())
    assert env._frames == 0
  assert counts == {0, 1, 2}
  assert load_config("atari100k_pong").env.atari.noops == 30


@pytest.fixture(scope="module")
def breakout():
  return AtariEnvironment("breakout", seed=0)


def test_game_over_terminates_with_discount_zero(breakout):
  breakout.reset()
  rng = np.random.default_rng(0)
  _, last = run_until_last(breakout, lambda: np.int32(rng.integers(18)), 5000)
  assert last.step_type == ts.StepType.LAST and last.discount == 0.0


def test_lives_reset_ends_episode_and_continues_game():
  env = AtariEnvironment("breakout", lives="reset", seed=0)
  env.reset()
  lives = env._ale.lives()
  rng = np.random.default_rng(0)
  _, last = run_until_last(env, lambda: np.int32(rng.integers(18)), 2000)
  assert last.discount == 0.0
  env.reset()
  assert env._ale.lives() == lives - 1  # The game went on.


def test_validate_py_environment(breakout):
  utils.validate_py_environment(breakout, episodes=1)


def test_unknown_game_suggests_closest():
  with pytest.raises(UserError, match="did you mean 'atari_pong'"):
    make_env("atari_pongg", load_config("atari_pongg"))
