"""Tests of the percentile return normaliser (Eq. 12) against hand computations."""

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent.return_normalizer import ReturnNormalizer


def test_ema_of_percentiles_after_one_and_two_updates():
  rng = np.random.default_rng(0)
  first = rng.normal(size=(15, 64)).astype(np.float32) * 50
  second = rng.normal(size=(15, 64)).astype(np.float32) * 200 + 30
  norm = ReturnNormalizer(decay=0.99, max_scale=1.0, perclo=5.0, perchi=95.0)
  # The EMA starts at zero and is not debiased.
  lo1 = 0.01 * np.percentile(first, 5)
  hi1 = 0.01 * np.percentile(first, 95)
  offset, scale = norm.update(tf.constant(first))
  np.testing.assert_allclose([norm.low.numpy(), norm.high.numpy()], [lo1, hi1], rtol=1e-5)
  np.testing.assert_allclose(offset.numpy(), lo1, rtol=1e-5)
  np.testing.assert_allclose(scale.numpy(), max(1.0, hi1 - lo1), rtol=1e-5)
  lo2 = 0.99 * lo1 + 0.01 * np.percentile(second, 5)
  hi2 = 0.99 * hi1 + 0.01 * np.percentile(second, 95)
  offset, scale = norm.update(tf.constant(second))
  np.testing.assert_allclose([norm.low.numpy(), norm.high.numpy()], [lo2, hi2], rtol=1e-5)
  np.testing.assert_allclose(scale.numpy(), max(1.0, hi2 - lo2), rtol=1e-5)


def test_scale_is_one_for_small_ranges():
  returns = np.linspace(-3, 5, 200).astype(np.float32)
  norm = ReturnNormalizer()
  _, scale = norm.update(tf.constant(returns))
  spread = 0.01 * (np.percentile(returns, 95) - np.percentile(returns, 5))
  assert spread < 1.0
  assert scale.numpy() == pytest.approx(1.0)


def test_scale_is_the_range_above_one():
  returns = np.linspace(-1000, 3000, 401).astype(np.float32)
  norm = ReturnNormalizer()
  _, scale = norm.update(tf.constant(returns))
  spread = 0.01 * (np.percentile(returns, 95) - np.percentile(returns, 5))
  assert spread > 1.0
  np.testing.assert_allclose(scale.numpy(), spread, rtol=1e-5)
  # A later small batch only moves the EMA: the scale stays the EMA range.
  _, scale = norm.update(tf.zeros([10]))
  np.testing.assert_allclose(scale.numpy(), 0.99 * spread, rtol=1e-5)


def test_stats_do_not_carry_gradients():
  returns = tf.Variable(np.linspace(0, 500, 50).astype(np.float32))
  norm = ReturnNormalizer()
  with tf.GradientTape() as tape:
    _, scale = norm.update(returns)
  assert tape.gradient(scale, returns) is None
