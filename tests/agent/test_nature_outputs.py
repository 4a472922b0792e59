"""The current generation's outputs (arXiv 2301.04104v2): raw-space twohot over symexp bins, the
discounted continue target, contdisc imagination weights and the RMS heads, against hand values."""

import math

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import distributions, networks, ops

E10, E20 = math.expm1(10.0), math.expm1(20.0)


def test_symexp_bins_by_hand():
  np.testing.assert_allclose(ops.symexp_bins(5).numpy(), [-E20, -E10, 0.0, E10, E20], rtol=1e-6)
  np.testing.assert_allclose(ops.symexp_bins(4).numpy(), [-E20, 0.0, 0.0, E20], rtol=1e-6)
  bins = ops.symexp_bins(255).numpy()
  assert bins.shape == (255,) and bins[127] == 0.0
  np.testing.assert_array_equal(bins, -bins[::-1])
  np.testing.assert_allclose(bins[126], -math.expm1(20.0 / 127), rtol=1e-5)
  assert np.all(np.diff(bins) > 0)


def test_symexp_twohot_target_interpolates_in_raw_space():
  bins = ops.symexp_bins(5)
  logits = tf.constant([[0.0, 1.0, 2.0, 3.0, 4.0]])
  dist = distributions.SymexpTwoHot(logits, bins)
  log_softmax = np.array([0.0, 1.0, 2.0, 3.0, 4.0]) - math.log(sum(math.exp(i) for i in range(5)))
  w_above = 1000.0 / E10  # 1000 lies between the bins 0 and e^10 - 1, linearly in raw space.
  expected = (1 - w_above) * log_softmax[2] + w_above * log_softmax[3]
  np.testing.assert_allclose(dist.log_prob(tf.constant([1000.0])).numpy(), [expected], rtol=1e-6)
  # Beyond the last bin all weight goes to it; exactly on a bin, all weight on that bin.
  np.testing.assert_allclose(dist.log_prob(tf.constant([1e10])).numpy(), [log_softmax[4]], rtol=1e-6)
  np.testing.assert_allclose(dist.log_prob(tf.constant([-E10])).numpy(), [log_softmax[1]], rtol=1e-6)


def test_symexp_twohot_mean_by_hand():
  bins = ops.symexp_bins(5)
  uniform = distributions.SymexpTwoHot(tf.zeros([3, 5]), bins)
  np.testing.assert_array_equal(uniform.mean().numpy(), [0.0, 0.0, 0.0])  # exactly, by the symmetric sum
  assert distributions.SymexpTwoHot(tf.zeros([255]), ops.symexp_bins(255)).mean().numpy() == 0.0
  logits = tf.math.log(tf.constant([1e-30, 1e-30, 0.5, 0.5, 1e-30]))
  np.testing.assert_allclose(distributions.SymexpTwoHot(logits, bins).mean().numpy(), 0.5 * E10, rtol=1e-5)
  even = distributions.SymexpTwoHot(tf.math.log(tf.constant([0.25, 0.25, 0.25, 0.25])), ops.symexp_bins(4))
  assert even.mean().numpy() == 0.0


def test_cont_target_by_hand():
  terminal = tf.constant([[False, True, False]])
  np.testing.assert_allclose(ops.cont_target(terminal, 333, True).numpy(), [[332 / 333, 0.0, 332 / 333]], rtol=1e-6)
  np.testing.assert_array_equal(ops.cont_target(terminal, 333, False).numpy(), [[1.0, 0.0, 1.0]])


def test_imagination_weights_by_hand():
  # contdisc: the predicted continue probabilities of all states, the start state's included, discount 1.
  cont = tf.constant([[0.9], [0.5], [0.8]])
  np.testing.assert_allclose(ops.imagination_weights(cont, 1.0).numpy()[:, 0], [0.9, 0.45, 0.36], rtol=1e-6)
  # 2023: the start state's 1 - is_terminal, then flags, with the discount outside.
  cont = tf.constant([[1.0], [1.0], [0.0], [1.0]])
  np.testing.assert_allclose(ops.imagination_weights(cont, 0.5).numpy()[:, 0], [1.0, 0.5, 0.0, 0.0], rtol=1e-6)


def _feat(n=4, size=6):
  return tf.constant(np.random.default_rng(0).normal(size=(n, size)).astype(np.float32))


def test_rms_value_head_predicts_zero_at_first():
  head = networks.Head("symexp_twohot", 3, 8, bins=255, outscale=0.0, norm="rms", norm_eps=1e-4)
  head.build((None, 6))
  assert not np.any(head.out.kernel.numpy()) and not np.any(head.out.bias.numpy())
  np.testing.assert_array_equal(head(_feat()).mean().numpy(), np.zeros(4))
  assert isinstance(head.trunk.hidden[0], networks.RMSNormDense)


def test_rms_head_output_layers():
  """Output layers: bias, truncated-normal fan-in kernel times outscale (policy 0.01, continue 1)."""
  pol = networks.Head("onehot", 3, 64, size=18, outscale=0.01, norm="rms", norm_eps=1e-4)
  pol.build((None, 6))
  kernel = pol.out.kernel.numpy()
  assert kernel.shape == (64, 18) and pol.out.bias.shape == (18,)
  assert 0 < np.abs(kernel).max() <= 0.01 * 2 * 1.1368 / math.sqrt(64) + 1e-7
  dist = pol(_feat())
  np.testing.assert_allclose(dist.probs.numpy().sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(dist.logits.numpy(), pol.out(pol.trunk(_feat())).numpy(), rtol=1e-6)  # no unimix
  con = networks.Head("binary", 1, 64, outscale=1.0, norm="rms", norm_eps=1e-4)
  con.build((None, 6))
  assert 0.3 < np.std(con.out.kernel.numpy()) * math.sqrt(64) < 1.5
  act = networks.Head("normal", 3, 16, size=2, outscale=0.01, minstd=0.1, maxstd=1.0, norm="rms")
  act.build((None, 6))
  scale = act(_feat()).scale.numpy()
  assert np.all(scale >= 0.1) and np.all(scale <= 1.0) and act.std.bias.shape == (2,)


def test_rms_head_config_round_trip():
  head = networks.Head("symexp_twohot", 1, 8, bins=17, outscale=0.0, norm="rms", norm_eps=1e-4)
  head.build((None, 6))
  other = networks.Head.from_config(head.get_config())
  other.build((None, 6))
  assert other.norm == "rms" and other.output_kind == "symexp_twohot"
  np.testing.assert_allclose(other._bins.numpy(), ops.symexp_bins(17).numpy())


@pytest.mark.parametrize("precision", ["mixed_bfloat16"], indirect=True)
def test_rms_heads_under_mixed_bfloat16(precision):
  for output in ("symexp_twohot", "binary", "onehot", "normal"):
    head = networks.Head(output, 1, 8, size=3, bins=17, outscale=1.0, norm="rms", norm_eps=1e-4)
    head.build((None, 6))
    dist = head(_feat())
    value = dist.mean() if output != "onehot" else dist.probs
    assert value.dtype == tf.float32 and np.all(np.isfinite(value.numpy())), output


SHAPES = {"pos": (3,), "level": (), "grid": (2,), "image": (16, 16, 3)}
CLASSES = {"level": 4, "grid": 3}


def _obs():
  rng = np.random.default_rng(3)
  return {
    "pos": tf.constant(rng.normal(size=(2, 5, 3)).astype(np.float32) * 10),
    "level": tf.constant([[0, 1, 2, 3, 1], [3, 3, 0, 1, 2]]),
    "grid": tf.constant(rng.integers(0, 3, size=(2, 5, 2))),
    "image": tf.constant(rng.integers(0, 256, size=(2, 5, 16, 16, 3)).astype(np.uint8)),
  }


def test_vector_encoder_one_hot_in_symlog_for_the_rest():
  kw = dict(norm_eps=1e-4, norm="rms", cnn="pooling", classes=CLASSES)
  enc = networks.MultiEncoder(SHAPES, "image", ".*", 2, 3, 16, **kw)
  assert enc.vector_size == 2 * 3 + 4 + 3 and len(enc.mlp.hidden) == 3 and enc.output_size == 1 * 1 * 2 * 4 + 16
  assert isinstance(enc.cnn, networks.PoolingImageEncoder)
  obs = _obs()
  out = enc(obs).numpy()
  # Keys in sorted order: grid (one-hot, 2 x 3), level (one-hot, 4), pos (symlog, 3).
  grid = np.eye(3)[obs["grid"].numpy()].reshape(2, 5, 6)
  level = np.eye(4)[obs["level"].numpy()]
  pos = np.sign(obs["pos"].numpy()) * np.log1p(np.abs(obs["pos"].numpy()))
  expected = enc.mlp(tf.constant(np.concatenate([grid, level, pos], -1), tf.float32)).numpy()
  np.testing.assert_allclose(out[..., enc.cnn.output_size :], expected, rtol=1e-5, atol=1e-6)


def test_vector_decoder_categorical_out():
  dec = networks.MultiDecoder(
    SHAPES, "image", ".*", 2, 3, 16, norm_eps=1e-4, norm="rms", cnn="pooling", classes=CLASSES, deter_size=8
  )
  dec.build((None, 8 + 12))
  assert dec.vector_out["grid"].bias.shape == (6,) and dec.vector_out["level"].bias.shape == (4,)
  assert isinstance(dec.cnn, networks.UpsamplingImageDecoder)
  feat = tf.constant(np.random.default_rng(4).normal(size=(2, 5, 20)).astype(np.float32))
  dists = dec(feat)
  assert dists["image"].mode().shape == (2, 5, 16, 16, 3)
  obs = _obs()
  logits = dec.vector_out["grid"](dec.mlp(feat)).numpy().reshape(2, 5, 2, 3)
  log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  index = obs["grid"].numpy()
  expected = np.take_along_axis(log_softmax, index[..., None], -1)[..., 0].sum(-1)
  np.testing.assert_allclose(dists["grid"].log_prob(obs["grid"]).numpy(), expected, rtol=1e-5)
  assert dists["level"].log_prob(obs["level"]).shape == (2, 5)
  assert dists["pos"].log_prob(obs["pos"]).shape == (2, 5)
  np.testing.assert_array_equal(dists["grid"].mode().numpy(), log_softmax.argmax(-1))


def test_replay_lambda_return_by_hand():
  """lambda 0.5, discount 0.9, bootstrap [10, 20, 30]:
  R_t = r_{t+1} + live_{t+1} ((1 - lam) boot_{t+1} + lam R_{t+1})."""
  reward = tf.constant([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
  terminal = tf.constant([[False, False, True], [False, False, False]])
  boot = tf.constant([[10.0, 20.0, 30.0], [10.0, 20.0, 30.0]])
  ret = ops.replay_lambda_return(reward, terminal, terminal, boot, 0.5, 0.9).numpy()
  # Row 0 ends in a terminal (and last) step: R_1 = 2; R_0 = 1 + 0.9 (0.5 * 20 + 0.5 * 2) = 10.9.
  # Row 1 continues: R_1 = 2 + 0.9 * 30 = 29; R_0 = 1 + 0.9 (0.5 * 20 + 0.5 * 29) = 23.05.
  np.testing.assert_allclose(ret, [[10.9, 2.0], [23.05, 29.0]], rtol=1e-6)
  # An episode end that is not a termination (is_last only) cuts the mixing but keeps the discount.
  last = tf.constant([[False, True, False]])
  ret = ops.replay_lambda_return(reward[:1], tf.zeros_like(last), last, boot[:1], 0.5, 0.9).numpy()
  # R_1 = 2 + 0.9 * 30 = 29; at t = 0 the next step is last: lam = 0, R_0 = 1 + 0.9 * 20 = 19.
  np.testing.assert_allclose(ret, [[19.0, 29.0]], rtol=1e-6)


def test_replay_value_loss_by_hand():
  """A zero-initialised critic (uniform over 5 bins) scores every target -log 5, as does the slow
  critic's target: each weighted step costs 2 log 5; weights 1 - is_last on steps 0 .. T - 2; scale 0.3."""
  from dreamer_tf.agent.actor_critic import ActorCritic
  from dreamer_tf.config import load_config

  model = load_config(None, ["nature", "debug"], ["model.bins=5"]).model
  ac = ActorCritic(10, 3, True, model)
  feat = tf.constant(np.random.default_rng(0).normal(size=(1, 3, 10)).astype(np.float32))
  data = dict(
    reward=tf.constant([[0.0, 1.0, 2.0]]),
    is_terminal=tf.constant([[False, False, False]]),
    is_last=tf.constant([[False, True, False]]),
  )
  loss, _ = ac.replay_value_loss(feat, data, tf.constant([[10.0, 20.0, 30.0]]))
  np.testing.assert_allclose(float(loss), 0.3 * (2 * math.log(5)) * 1 / 2, rtol=1e-5)
  data["is_last"] = tf.constant([[False, False, True]])
  loss, _ = ac.replay_value_loss(feat, data, tf.constant([[10.0, 20.0, 30.0]]))
  np.testing.assert_allclose(float(loss), 0.3 * 2 * math.log(5), rtol=1e-5)


# dreamerv3/agent.py:lambda_return and embodied/jax/outs.py:TwoHot with Head.symexp_twohot's bins
# (danijar/dreamerv3 e3f0224, jax 0.4.33, float32) on the inputs of _author_return_inputs: replay returns
# (is_last, is_terminal, rewards, bootstrap, discount 1 - 1/333, lambda 0.95), imagination returns of
# contdisc (term = 1 - cont, discount 1, bootstrap = values) and the twohot loss and prediction.
# Recorded: the first 6 values, the sum and the sum of squares.
AUTHOR_RETURNS = {
  "rep": ([-1.3576438426971436, -0.24836161732673645, 0.3048880398273468, -0.1518160104751587,
           -1.3563770055770874, -1.6440861225128174], -28.327056884765625, 103.90303802490234),
  "img": ([-0.8449732661247253, 0.3020837903022766, 0.9423308372497559, 0.7538131475448608,
           -0.8006112575531006, -1.4456353187561035], -21.268566131591797, 60.944644927978516),
  "loss": ([6.313279151916504, 5.522703647613525, 6.176475524902344, 6.205820083618164],
           24.218278884887695, 147.018798828125),
  "pred": ([-11715486.0, 3030865.5, -16877858.0, -8525741.0], -34088220.0, 503989112143872.0),
}  # fmt: skip


def _author_return_inputs():
  rng = np.random.default_rng(5)
  rew = rng.normal(size=(3, 7)).astype(np.float32)
  term = rng.uniform(size=(3, 7)) < 0.2
  last = term | (rng.uniform(size=(3, 7)) < 0.15)
  boot = rng.normal(size=(3, 7)).astype(np.float32) * 3
  cont = rng.uniform(0.5, 1.0, size=(3, 7)).astype(np.float32)
  logits = rng.normal(size=(4, 255)).astype(np.float32)
  targets = np.array([0.0, 3.7, -1234.5, 1e9], np.float32)
  return rew, term, last, boot, cont, logits, targets


def test_returns_and_twohot_equal_the_author_code():
  rew, term, last, boot, cont, logits, targets = _author_return_inputs()
  time_major = lambda x: tf.constant(x.T[1:])
  dist = distributions.SymexpTwoHot(logits, ops.symexp_bins(255))
  outputs = {
    "rep": ops.replay_lambda_return(rew, term, last, boot, 0.95, 1 - 1 / 333).numpy(),
    "img": ops.lambda_return(time_major(rew), time_major(boot), time_major(cont), boot[:, -1], 0.95, 1.0).numpy().T,
    "loss": -dist.log_prob(targets).numpy(),
    "pred": dist.mean().numpy(),
  }
  for key, (first, total, squares) in AUTHOR_RETURNS.items():
    out = outputs[key].astype(np.float64)
    np.testing.assert_allclose(out.reshape(-1)[:6], first, rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose([out.sum(), np.square(out).sum()], [total, squares], rtol=1e-5, err_msg=key)
