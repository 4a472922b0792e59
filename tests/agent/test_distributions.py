"""Tests of dreamer_tf/agent/distributions.py against hand-computed and NumPy values."""

import math

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from dreamer_tf.agent import distributions, ops

OneHot = distributions.OneHotCategorical


def _np_log_softmax(x, axis=-1):
  x = x - x.max(axis, keepdims=True)
  return x - np.log(np.exp(x).sum(axis, keepdims=True))


def test_unimix_probabilities_by_hand():
  dist = OneHot(tf.constant([[0.0, math.log(3.0)]]), unimix=0.01)
  expected = 0.99 * np.array([0.25, 0.75]) + 0.01 / 2
  np.testing.assert_allclose(dist.probs.numpy()[0], expected, rtol=1e-6)
  np.testing.assert_allclose(dist.log_probs.numpy()[0], np.log(expected), rtol=1e-6)


def test_unimix_keeps_probabilities_off_zero():
  dist = OneHot(tf.constant([[-1e4, 0.0, -1e4, -1e4]]), unimix=0.01)
  np.testing.assert_allclose(dist.probs.numpy()[0], [0.0025, 0.9925, 0.0025, 0.0025], rtol=1e-5)


def test_no_unimix_is_plain_softmax():
  logits = np.array([[0.3, -1.2, 2.0]], np.float32)
  dist = OneHot(tf.constant(logits))
  np.testing.assert_allclose(dist.probs.numpy(), np.exp(_np_log_softmax(logits)), rtol=1e-6)


def test_straight_through_sample_value_and_gradient():
  logits = tf.Variable([[0.5, -0.3, 1.2, 0.0], [2.0, 0.1, -1.0, 0.3]])
  weights = tf.constant([[1.0, 2.0, 3.0, 4.0], [-1.0, 0.5, 2.0, 0.0]])
  with tf.GradientTape(persistent=True) as tape:
    dist = OneHot(logits, unimix=0.01)
    sample = dist.sample(tf.constant([1, 2]))
    via_sample = tf.reduce_sum(sample * weights)
    via_probs = tf.reduce_sum(dist.probs * weights)
  value = sample.numpy()
  assert set(np.unique(value)) <= {0.0, 1.0} or np.allclose(value.sum(-1), 1.0)
  np.testing.assert_allclose(np.sort(value, -1), [[0, 0, 0, 1], [0, 0, 0, 1]], atol=1e-6)
  np.testing.assert_allclose(
    tape.gradient(via_sample, logits).numpy(), tape.gradient(via_probs, logits).numpy(), rtol=1e-6
  )
  mode = dist.mode().numpy()
  np.testing.assert_allclose(mode, [[0, 0, 1, 0], [1, 0, 0, 0]], atol=1e-6)


def test_sampling_is_stateless_and_follows_probs():
  dist = OneHot(tf.math.log(tf.constant([[0.1, 0.6, 0.3]] * 4000)))
  a = dist.sample(tf.constant([3, 4])).numpy()
  b = dist.sample(tf.constant([3, 4])).numpy()
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(a.mean(0), [0.1, 0.6, 0.3], atol=0.03)


def test_log_prob_and_entropy_sum_over_event_dims():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 5)).astype(np.float32)  # [B, latents, classes]
  onehot = np.eye(5, dtype=np.float32)[rng.integers(0, 5, size=(3, 4))]
  dist = OneHot(tf.constant(logits), event_dims=1)
  logp = _np_log_softmax(logits)
  np.testing.assert_allclose(dist.log_prob(onehot).numpy(), (onehot * logp).sum((-1, -2)), rtol=1e-5)
  np.testing.assert_allclose(dist.entropy().numpy(), -(np.exp(logp) * logp).sum((-1, -2)), rtol=1e-5)
  actor = OneHot(tf.constant(logits[:, 0]))  # event_dims=0: the actor
  np.testing.assert_allclose(actor.log_prob(onehot[:, 0]).numpy(), (onehot[:, 0] * logp[:, 0]).sum(-1), rtol=1e-5)


def test_kl_matches_numpy_summed_over_latents():
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(2, 6, 3, 4)).astype(np.float32)
  la, lb = _np_log_softmax(a), _np_log_softmax(b)
  expected = (np.exp(la) * (la - lb)).sum((-1, -2))
  kl = OneHot(tf.constant(a), event_dims=1).kl(OneHot(tf.constant(b), event_dims=1))
  assert kl.shape == (6,)
  np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-5)
  assert np.all(kl.numpy() >= 0)


def _kl_terms(post_logits, prior_logits, free_nats=1.0):
  """The world model's balanced KL terms (world_model.py: WorldModel.loss)."""
  sg = tf.stop_gradient
  post = OneHot(post_logits, unimix=0.01, event_dims=1)
  prior = OneHot(prior_logits, unimix=0.01, event_dims=1)
  kl_dyn = OneHot(sg(post.logits), event_dims=1).kl(prior)
  kl_rep = post.kl(OneHot(sg(prior.logits), event_dims=1))
  return kl_dyn, kl_rep, tf.maximum(kl_dyn, free_nats), tf.maximum(kl_rep, free_nats)


def test_kl_balancing_stop_gradients():
  rng = np.random.default_rng(2)
  post = tf.Variable(rng.normal(size=(2, 3, 4)).astype(np.float32) * 3)
  prior = tf.Variable(rng.normal(size=(2, 3, 4)).astype(np.float32) * 3)
  with tf.GradientTape(persistent=True) as tape:
    kl_dyn, kl_rep, dyn, rep = _kl_terms(post, prior)
    dyn, rep = tf.reduce_sum(dyn), tf.reduce_sum(rep)
  assert np.all(kl_dyn.numpy() > 1.0), "the test needs KLs above the free bits"
  # Both terms have the same value; only their gradients differ.
  np.testing.assert_allclose(kl_dyn.numpy(), kl_rep.numpy(), rtol=1e-6)
  assert tape.gradient(dyn, post) is None
  assert np.abs(tape.gradient(dyn, prior).numpy()).max() > 1e-3
  assert tape.gradient(rep, prior) is None
  assert np.abs(tape.gradient(rep, post).numpy()).max() > 1e-3
  # The KL value itself matches NumPy on the unimixed distributions.
  mix = lambda x: np.log(0.99 * np.exp(_np_log_softmax(x)) + 0.01 / 4)
  lp, lq = mix(post.numpy()), mix(prior.numpy())
  np.testing.assert_allclose(kl_dyn.numpy(), (np.exp(lp) * (lp - lq)).sum((-1, -2)), rtol=1e-5)


def test_free_bits_clip_below_one_nat():
  base = np.zeros((2, 3, 4), np.float32)
  near = base.copy()
  near[0, 0, 0] = 0.3  # a small KL (< 1 nat) for batch 0
  far = base.copy()
  far[1] = np.array([5.0, 0, 0, 0])  # a large KL for batch 1
  post = tf.Variable(near + far)
  prior = tf.Variable(base)
  with tf.GradientTape() as tape:
    kl_dyn, _, dyn, _ = _kl_terms(post, prior)
    loss = tf.reduce_sum(dyn)
  kl = kl_dyn.numpy()
  assert kl[0] < 1.0 < kl[1]
  np.testing.assert_allclose(dyn.numpy(), [1.0, kl[1]], rtol=1e-6)
  # The clipped entry passes no gradient; gradients reach prior logits of batch 1 only.
  grad = tape.gradient(loss, prior).numpy()
  assert np.all(grad[0] == 0.0)
  assert np.abs(grad[1]).max() > 1e-3


def test_twohot_symlog_zero_logits_predict_zero():
  for num_bins in (5, 31, 255):
    dist = distributions.TwoHotSymlog(tf.zeros([4, num_bins]), ops.symlog_bins(num_bins))
    np.testing.assert_allclose(dist.mean().numpy(), 0.0, atol=1e-6)
    np.testing.assert_allclose(dist.log_prob(tf.constant([0.0, 3.0, -2.0, 1e3])).numpy(), -np.log(num_bins), rtol=1e-5)


def test_twohot_symlog_log_prob_and_mean_by_hand():
  bins = ops.symlog_bins(5)  # [-20, -10, 0, 10, 20] in symlog space
  np.testing.assert_allclose(bins.numpy(), [-20, -10, 0, 10, 20])
  logits = np.array([0.0, 1.0, 2.0, 3.0, 4.0], np.float32)
  dist = distributions.TwoHotSymlog(tf.constant([logits]), bins)
  logp = _np_log_softmax(logits)
  # symlog(e^5 - 1) = 5 lies halfway between the bins 0 and 10.
  np.testing.assert_allclose(
    dist.log_prob(tf.constant([math.exp(5) - 1])).numpy(), [0.5 * logp[2] + 0.5 * logp[3]], rtol=1e-5
  )
  # symlog(-(e^12 - 1)) = -12 lies 0.2 of the way from -10 to -20.
  np.testing.assert_allclose(
    dist.log_prob(tf.constant([-(math.exp(12) - 1)])).numpy(), [0.2 * logp[0] + 0.8 * logp[1]], rtol=1e-5
  )
  p = np.exp(logp)
  expected_mean = np.sign(p @ [-20, -10, 0, 10, 20]) * np.expm1(abs(p @ [-20, -10, 0, 10, 20]))
  np.testing.assert_allclose(dist.mean().numpy(), [expected_mean], rtol=1e-4)


def test_bernoulli():
  logits = tf.constant([-2.0, 0.0, 0.5, 3.0])
  dist = distributions.Bernoulli(logits)
  np.testing.assert_array_equal(dist.mode().numpy(), [0, 0, 1, 1])
  p = 1 / (1 + np.exp(-logits.numpy()))
  np.testing.assert_allclose(dist.mean().numpy(), p, rtol=1e-6)
  np.testing.assert_allclose(dist.log_prob(tf.ones(4)).numpy(), np.log(p), rtol=1e-5)
  np.testing.assert_allclose(dist.log_prob(tf.zeros(4)).numpy(), np.log(1 - p), rtol=1e-5)
  np.testing.assert_allclose(
    dist.log_prob(tf.constant([1.0, 0.0, 0.0, 1.0])).numpy(),
    np.log([p[0], 1 - p[1], 1 - p[2], p[3]]),
    rtol=1e-5,
  )


def test_bounded_normal_std_range_and_mean():
  std_logits = tf.constant([[-100.0, 0.0, 100.0]])
  dist = distributions.BoundedNormal(tf.constant([[0.3, -5.0, 0.0]]), std_logits, 0.1, 1.0)
  sigmoid2 = 1 / (1 + math.exp(-2.0))
  np.testing.assert_allclose(dist.scale.numpy(), [[0.1, 0.9 * sigmoid2 + 0.1, 1.0]], rtol=1e-6)
  np.testing.assert_allclose(dist.mode().numpy(), np.tanh([[0.3, -5.0, 0.0]]), rtol=1e-6)


def test_bounded_normal_log_prob_and_entropy_vs_scipy():
  rng = np.random.default_rng(3)
  mean = rng.normal(size=(4, 2)).astype(np.float32)
  std_logits = rng.normal(size=(4, 2)).astype(np.float32)
  value = rng.uniform(-1, 1, size=(4, 2)).astype(np.float32)
  dist = distributions.BoundedNormal(tf.constant(mean), tf.constant(std_logits), 0.1, 1.0)
  loc = np.tanh(mean)
  scale = 0.9 / (1 + np.exp(-(std_logits + 2))) + 0.1
  expected = scipy.stats.norm.logpdf(value, loc, scale).sum(-1)
  np.testing.assert_allclose(dist.log_prob(tf.constant(value)).numpy(), expected, rtol=1e-5)
  np.testing.assert_allclose(dist.entropy().numpy(), scipy.stats.norm.entropy(loc, scale).sum(-1), rtol=1e-5)


def test_bounded_normal_sample_is_reparameterised():
  mean = tf.Variable([[0.2, -0.4]])
  with tf.GradientTape() as tape:
    dist = distributions.BoundedNormal(mean, tf.zeros([1, 2]), 0.1, 1.0)
    total = tf.reduce_sum(dist.sample(tf.constant([0, 1])))
  grad = tape.gradient(total, mean).numpy()
  np.testing.assert_allclose(grad, 1 - np.tanh([[0.2, -0.4]]) ** 2, rtol=1e-5)


def test_mse_and_symlog_mse():
  pred = np.array([[[0.5, 0.2], [0.1, 0.9]]], np.float32)  # [1, 2, 2]
  target = np.array([[[0.0, 0.2], [1.0, 1.0]]], np.float32)
  mse = distributions.MSE(tf.constant(pred), 2)
  np.testing.assert_allclose(mse.log_prob(tf.constant(target)).numpy(), [-(0.25 + 0 + 0.81 + 0.01)], rtol=1e-5)
  np.testing.assert_allclose(mse.mode().numpy(), pred)
  vec = distributions.SymlogMSE(tf.constant([[1.0, -2.0]]), 1)
  target = np.array([[math.e - 1, -(math.e - 1)]], np.float32)  # symlog: [1, -1]
  np.testing.assert_allclose(vec.log_prob(tf.constant(target)).numpy(), [-(0.0 + 1.0)], rtol=1e-5)
  np.testing.assert_allclose(vec.mode().numpy(), [[math.e - 1, -(math.e**2 - 1)]], rtol=1e-5)
  scalar = distributions.SymlogMSE(tf.constant([2.0, 0.0]), 0)
  np.testing.assert_allclose(scalar.log_prob(tf.constant([0.0, math.e - 1])).numpy(), [-4.0, -1.0], rtol=1e-5)


def test_symlog_mse_ignores_squared_distances_below_the_2023_tolerance():
  # symlog(0) = 0: squared distances 0.25e-8 and 0.81e-8 are below 1e-8 and count as 0 (no gradient);
  # 1.21e-8 counts in full.
  pred = tf.Variable([[0.5e-4, -0.9e-4, 1.1e-4]])
  with tf.GradientTape() as tape:
    log_prob = distributions.SymlogMSE(pred, 1).log_prob(tf.zeros([1, 3]))
  np.testing.assert_allclose(log_prob.numpy(), [-1.21e-8], rtol=1e-4)
  np.testing.assert_allclose(tape.gradient(log_prob, pred).numpy(), [[0.0, 0.0, -2.2e-4]], rtol=1e-4)
  loose = distributions.SymlogMSE(tf.constant([0.5e-4]), 0, tol=0.0)
  np.testing.assert_allclose(loose.log_prob(tf.zeros([1])).numpy(), [-0.25e-8], rtol=1e-5)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_distributions_compute_in_float32(dtype):
  logits = tf.cast(tf.constant([[0.1, 0.2, 0.3]]), dtype)
  assert OneHot(logits, 0.01).log_probs.dtype == tf.float32
  assert distributions.TwoHotSymlog(logits, ops.symlog_bins(3)).mean().dtype == tf.float32
  assert distributions.Bernoulli(logits).log_prob(tf.ones([1, 3])).dtype == tf.float32
