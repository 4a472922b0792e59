"""Tests of dreamer_tf/agent/ops.py against hand-computed and NumPy values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import ops

E = math.e


def test_symlog_hand_values():
  x = tf.constant([0.0, E - 1.0, -(E**2 - 1.0), E**3 - 1.0], tf.float64)
  np.testing.assert_allclose(ops.symlog(x).numpy(), [0.0, 1.0, -2.0, 3.0], atol=1e-12)


def test_symexp_hand_values():
  x = tf.constant([0.0, 1.0, -2.0, 3.0], tf.float64)
  np.testing.assert_allclose(ops.symexp(x).numpy(), [0.0, E - 1.0, -(E**2 - 1.0), E**3 - 1.0], rtol=1e-12)


def test_symlog_symexp_round_trip():
  x = np.array([-1e6, -123.4, -1.0, -1e-3, 0.0, 1e-3, 0.5, 7.0, 1e6])
  np.testing.assert_allclose(ops.symexp(ops.symlog(tf.constant(x))).numpy(), x, rtol=1e-10)
  np.testing.assert_allclose(ops.symlog(ops.symexp(tf.constant(x[2:-2]))).numpy(), x[2:-2], atol=1e-10)
  assert ops.symlog(tf.constant(0.0)).numpy() == 0.0
  assert ops.symexp(tf.constant(0.0)).numpy() == 0.0


BINS5 = tf.constant([-2.0, -1.0, 0.0, 1.0, 2.0])


@pytest.mark.parametrize(
  "x, expected",
  [
    (0.25, [0, 0, 0.75, 0.25, 0]),  # between bins: closer bin gets more weight
    (-1.6, [0.6, 0.4, 0, 0, 0]),
    (1.0, [0, 0, 0, 1, 0]),  # exactly on a bin
    (-2.0, [1, 0, 0, 0, 0]),  # exactly on the first bin
    (2.0, [0, 0, 0, 0, 1]),  # exactly on the last bin
    (-7.0, [1, 0, 0, 0, 0]),  # below the range: all weight on the end bin
    (3.5, [0, 0, 0, 0, 1]),  # above the range
  ],
)
def test_twohot_five_bins_by_hand(x, expected):
  np.testing.assert_allclose(ops.twohot(tf.constant([x]), BINS5).numpy()[0], expected, atol=1e-6)


def test_twohot_scalar_input_shape():
  assert ops.twohot(tf.constant(0.25), BINS5).shape == (5,)


def test_twohot_batched_shape_and_sum():
  x = tf.constant([[0.25, -7.0, 1.0], [0.5, 1.5, -0.5]])
  out = ops.twohot(x, BINS5)
  assert out.shape == (2, 3, 5)
  np.testing.assert_allclose(out.numpy().sum(-1), np.ones((2, 3)), atol=1e-6)


def test_symlog_bins():
  bins = ops.symlog_bins(255).numpy()
  np.testing.assert_allclose(bins, np.linspace(-20, 20, 255), atol=1e-5)
  assert bins.shape == (255,)


def test_twohot_decodes_inside_range_with_symlog_bins():
  bins = ops.symlog_bins(255)
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.uniform(-20, 20, 500), bins.numpy()[::17], [0.0, 19.99, -19.99]]).astype(np.float32)
  enc = ops.twohot(tf.constant(x), bins).numpy()
  assert (enc >= 0).all()
  assert ((enc > 0).sum(-1) <= 2).all()
  np.testing.assert_allclose(enc.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose((enc * bins.numpy()).sum(-1), x, atol=1e-4)
  # Outside the range everything goes to the end bins.
  out = ops.twohot(tf.constant([-25.0, 30.0]), bins).numpy()
  assert out[0, 0] == pytest.approx(1.0) and out[1, -1] == pytest.approx(1.0)


def _numpy_lambda_return(reward, value, cont, bootstrap, lam, disc):
  """R_t = r_t + gamma c_t ((1 - lambda) v_t + lambda R_{t+1}), R_H = bootstrap."""
  horizon = reward.shape[0]
  out = np.zeros_like(reward)
  next_ret = bootstrap
  for t in reversed(range(horizon)):
    out[t] = reward[t] + disc * cont[t] * ((1 - lam) * value[t] + lam * next_ret)
    next_ret = out[t]
  return out


def test_lambda_return_two_steps_by_hand():
  reward = tf.constant([[1.0], [2.0]])
  value = tf.constant([[3.0], [4.0]])
  cont = tf.constant([[1.0], [1.0]])
  ret = ops.lambda_return(reward, value, cont, tf.constant([5.0]), 0.5, 0.9).numpy()
  # R_1 = 2 + 0.9 (0.5 * 4 + 0.5 * 5) = 6.05; R_0 = 1 + 0.9 (0.5 * 3 + 0.5 * 6.05) = 5.0725.
  np.testing.assert_allclose(ret[:, 0], [5.0725, 6.05], rtol=1e-6)
  # A terminal at step 1 cuts off everything after it: R_1 = 2, R_0 = 1 + 0.9 (1.5 + 1) = 3.25.
  cont = tf.constant([[1.0], [0.0]])
  ret = ops.lambda_return(reward, value, cont, tf.constant([5.0]), 0.5, 0.9).numpy()
  np.testing.assert_allclose(ret[:, 0], [3.25, 2.0], rtol=1e-6)


@pytest.mark.parametrize("lam, disc", [(0.95, 1 - 1 / 333), (0.0, 0.9), (1.0, 0.99)])
def test_lambda_return_matches_numpy_loop(lam, disc):
  rng = np.random.default_rng(1)
  horizon, batch = 15, 7
  reward = rng.normal(size=(horizon, batch))
  value = rng.normal(size=(horizon, batch)) * 3
  cont = (rng.uniform(size=(horizon, batch)) > 0.2).astype(np.float64)
  bootstrap = rng.normal(size=batch)
  expected = _numpy_lambda_return(reward, value, cont, bootstrap, lam, disc)
  ret = ops.lambda_return(tf.constant(reward), tf.constant(value), tf.constant(cont), tf.constant(bootstrap), lam, disc)
  np.testing.assert_allclose(ret.numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("size", [1, 2, 10, 101, 1000])
@pytest.mark.parametrize("q", [0, 5, 37.5, 50, 95, 100])
def test_percentile_matches_numpy(size, q):
  x = np.random.default_rng(size).normal(size=size).astype(np.float32) * 10
  np.testing.assert_allclose(ops.percentile(tf.constant(x), q).numpy(), np.percentile(x, q), rtol=1e-5, atol=1e-5)


def test_percentile_of_multidimensional_input():
  x = np.random.default_rng(3).uniform(-5, 5, size=(15, 4, 3)).astype(np.float32)
  for q in (5, 95):
    np.testing.assert_allclose(ops.percentile(tf.constant(x), q).numpy(), np.percentile(x, q), rtol=1e-5)
