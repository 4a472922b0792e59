"""The current generation's RSSM (:class:`BlockRSSM`, arXiv 2301.04104v2 ``dreamerv3/rssm.py:RSSM``):
outputs equal to the author's code from the same weights, zero state on ``is_first``, precision,
XLA and checkpoints."""

import zlib

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import distributions, networks
from dreamer_tf.agent.author_names import block_rssm_names

DETER, HIDDEN, STOCH, CLASSES, ACTIONS, EMBED = 64, 12, 4, 3, 5, 7

# dreamerv3/rssm.py (RSSM.loss, RSSM._prior, RSSM.imagine with given actions) of danijar/dreamerv3 e3f0224,
# run with jax 0.4.33 on CPU in float32 with deter 64, hidden 12, 4 x 3 latents, 5 actions, 8 blocks,
# act silu, norm rms, and outs.Categorical.sample replaced by the argmax (deterministic latents).
# Parameters: uniform(-0.5, 0.5) (scales 1 + that) from a generator seeded with the CRC32 of the
# author's parameter name; inputs from default_rng(1) as in _inputs. Logits are the author's unimixed
# log-probabilities (its _dist(logit).dist.logits). Recorded: first 4 values, sum, sum of squares.
AUTHOR = {
  "deter": ([0.06071450933814049, -0.0044427113607525826, 0.041302673518657684, -0.0434335358440876],
            1.451026439666748, 15.68519115447998),
  "post": ([-1.8309282064437866, -1.6503289937973022, -0.4342527985572815, -1.3051918745040894],
           -119.70972442626953, 181.9471435546875),
  "prior": ([-1.8001563549041748, -1.514236330986023, -0.48653820157051086, -0.07526145130395889],
            -152.00076293945312, 357.8355407714844),
  "dyn": ([3.382091522216797, 2.872591972351074, 2.6819896697998047, 2.665294885635376],
          22.617652893066406, 65.37660217285156),
  "rep": ([3.382091522216797, 2.872591972351074, 2.6819896697998047, 2.665294885635376],
          22.617652893066406, 65.37660217285156),
  "img_deter": ([0.10620075464248657, 0.00634953984990716, 0.12461549788713455, -0.17302733659744263],
                0.2604042589664459, 21.275667190551758),
  "img_logit": ([-1.5531659126281738, -1.5847350358963013, -0.5388465523719788, -0.10165946185588837],
                -111.82091522216797, 254.16921997070312),
}  # fmt: skip


def _inputs():
  rng = np.random.default_rng(1)
  tokens = rng.normal(size=(2, 4, EMBED)).astype(np.float32)
  prev_action = rng.uniform(-2, 2, size=(2, 4, ACTIONS)).astype(np.float32)
  is_first = np.array([[True, False, False, False], [True, False, True, False]])
  img_action = rng.uniform(-2, 2, size=(2, 3, ACTIONS)).astype(np.float32)
  return tuple(tf.constant(x) for x in (tokens, prev_action, is_first, img_action))


def _rssm(**kwargs):
  rssm = networks.BlockRSSM(DETER, HIDDEN, STOCH, CLASSES, blocks=8, **kwargs)
  rssm.build_for(EMBED, ACTIONS)
  return rssm


def _author_names(rssm):
  """The author's parameter name (``dyn/...``) of each variable."""
  names = {}
  block_rssm_names(names, rssm)
  return names


@pytest.fixture
def deterministic_latents(monkeypatch):
  """Latent samples are the mode (as the author's run that recorded AUTHOR)."""
  monkeypatch.setattr(distributions.OneHotCategorical, "sample", lambda self, seed: self.mode())


def _author_weights(rssm):
  names = _author_names(rssm)
  assert len(names) == len(rssm.weights) == 27
  for name, var in names.items():
    value = np.random.default_rng(zlib.crc32(name.encode())).uniform(-0.5, 0.5, size=var.shape)
    var.assign(value.astype(np.float32) + (1.0 if name.endswith("/scale") else 0.0))


def _run(rssm):
  tokens, prev_action, is_first, img_action = _inputs()
  seed = tf.constant([0, 1])
  post, prior = rssm.observe(tokens, prev_action, is_first, seed)
  dyn, rep, _, _ = rssm.kl_losses(post, prior, 1.0)
  state = {k: v[:, -1] for k, v in post.items()}
  img_deter, img_logit = [], []
  for t in range(img_action.shape[1]):
    state = rssm.img_step(state, img_action[:, t], seed)
    img_deter.append(state["deter"])
    img_logit.append(state["logits"])
  return {
    "deter": post["deter"],
    "post": post["logits"],
    "prior": prior["logits"],
    "dyn": dyn,
    "rep": rep,
    "img_deter": tf.stack(img_deter, 1),
    "img_logit": tf.stack(img_logit, 1),
  }


def test_observe_and_imagine_equal_the_author_code(deterministic_latents):
  rssm = _rssm()
  _author_weights(rssm)
  outputs = _run(rssm)
  for key, (first, total, squares) in AUTHOR.items():
    out = tf.cast(outputs[key], tf.float64).numpy()
    np.testing.assert_allclose(out.reshape(-1)[:4], first, rtol=1e-5, atol=1e-6, err_msg=key)
    np.testing.assert_allclose([out.sum(), np.square(out).sum()], [total, squares], rtol=1e-5, err_msg=key)


def test_is_first_restarts_from_zeros(deterministic_latents):
  """A step marked ``is_first`` continues as a fresh sequence: state and previous action are zeros."""
  rssm = _rssm()
  tokens, prev_action, is_first, _ = _inputs()
  seed = tf.constant([0, 1])
  post, _ = rssm.observe(tokens, prev_action, is_first, seed)
  fresh, _ = rssm.observe(tokens[1:, 2:], prev_action[1:, 2:], is_first[1:, 2:], seed)
  np.testing.assert_allclose(post["deter"][1, 2:], fresh["deter"][0], rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(post["logits"][1, 2:], fresh["logits"][0], rtol=1e-6, atol=1e-6)
  init = rssm.initial(3)
  assert not rssm.weights[0].name.startswith("initial")
  for value in init.values():
    assert not np.any(value.numpy())


def test_every_variable_gets_a_gradient():
  rssm = _rssm()
  tokens, prev_action, is_first, _ = _inputs()
  with tf.GradientTape() as tape:
    post, prior = rssm.observe(tokens, prev_action, is_first, tf.constant([0, 1]))
    state = {k: v[:, -1] for k, v in post.items()}
    img = rssm.img_step(state, prev_action[:, -1], tf.constant([2, 3]))
    dyn, rep, _, _ = rssm.kl_losses(post, prior, 0.0)
    loss = tf.reduce_mean(dyn + rep) + tf.reduce_mean(tf.square(rssm.get_feat(img)))
  grads = tape.gradient(loss, rssm.trainable_variables)
  missing = [v.name for v, g in zip(rssm.trainable_variables, grads) if g is None or not np.any(g.numpy())]
  assert not missing


@pytest.mark.parametrize("precision", ["mixed_bfloat16"], indirect=True)
def test_mixed_bfloat16_is_close_to_float32(precision, deterministic_latents):
  rssm = _rssm()
  _author_weights(rssm)
  outputs = _run(rssm)
  assert outputs["deter"].dtype == tf.bfloat16 and outputs["post"].dtype == tf.float32
  for key, atol in (("deter", 0.03), ("dyn", 0.1)):
    out = tf.cast(outputs[key], tf.float64).numpy()
    np.testing.assert_allclose(out.reshape(-1)[:4], AUTHOR[key][0], atol=atol, err_msg=key)


def test_xla_observe_equals_eager(deterministic_latents):
  """With the mode as the sample (XLA draws other random numbers than the eager kernels)."""
  rssm = _rssm()
  tokens, prev_action, is_first, _ = _inputs()
  seed = tf.constant([4, 5])
  eager = rssm.observe(tokens, prev_action, is_first, seed)
  compiled = tf.function(rssm.observe, jit_compile=True)(tokens, prev_action, is_first, seed)
  for a, b in zip(tf.nest.flatten(eager), tf.nest.flatten(compiled)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_get_config_and_checkpoint(tmp_path):
  rssm = _rssm(prior_layers=2, post_layers=1)
  config = rssm.get_config()
  assert (config["deter"], config["hidden"], config["blocks"], config["prior_layers"]) == (DETER, HIDDEN, 8, 2)
  _author_weights(rssm)
  tf.train.Checkpoint(rssm=rssm).write(str(tmp_path / "ckpt"))
  other = networks.BlockRSSM.from_config(config)
  other.build_for(EMBED, ACTIONS)
  tf.train.Checkpoint(rssm=other).read(str(tmp_path / "ckpt")).assert_consumed()
  tokens, prev_action, is_first, _ = _inputs()
  a = rssm.observe(tokens, prev_action, is_first, tf.constant([0, 1]))
  b = other.observe(tokens, prev_action, is_first, tf.constant([0, 1]))
  for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
    np.testing.assert_array_equal(x, y)
