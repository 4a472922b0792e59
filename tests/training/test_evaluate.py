"""Evaluation samples from the actor by default (the 2023 code's eval mode); run.eval_greedy takes its mode."""

import numpy as np
import pytest

from dreamer_tf.config import ConfigError
from dreamer_tf.main import resolve_config
from dreamer_tf.training.loop import Trainer

ENV = "gym_Pendulum-v1"  # Continuous actions: a sampled and a greedy episode cannot return the same.


def _eval_returns(tmp_path, *overrides):
  config = resolve_config(ENV, ["debug"], list(overrides))
  trainer = Trainer(config, ENV, tmp_path)
  try:
    policy = trainer.eval_policy()
    first = [r["return"] for r in trainer.evaluate(1)]
    second = [r["return"] for r in trainer.evaluate(1)]
  finally:
    trainer.close()
  assert first == second  # The same random stream at every evaluation: comparable over training.
  return policy.greedy, first


def test_evaluation_samples_by_default_and_is_greedy_with_eval_greedy(tmp_path):
  greedy, sampled_returns = _eval_returns(tmp_path / "sampled")
  assert greedy is False
  greedy, greedy_returns = _eval_returns(tmp_path / "greedy", "run.eval_greedy=true")
  assert greedy is True
  # Same weights (run.seed), same environment seeds and latent samples: only the action choice differs.
  assert not np.allclose(sampled_returns, greedy_returns)


def test_eval_greedy_flag_maps_to_the_config():
  config = resolve_config(ENV, ["debug"], [], {"eval_greedy": True})
  assert config.run.eval_greedy is True
  assert resolve_config(ENV, ["debug"], []).run.eval_greedy is False


def test_eval_greedy_must_be_a_bool():
  with pytest.raises(ConfigError, match="eval_greedy"):
    resolve_config(ENV, ["debug"], ["run.eval_greedy=1"])
