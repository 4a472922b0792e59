"""Keras-layer tests of dreamer_tf/agent/networks: config round trips, shapes, precision, save/load."""

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent import distributions, networks

keras = tf.keras

SHAPES = {"image": (16, 16, 3), "state": (5,), "log_x": (2,)}
FEAT = 10


def _image(batch=(2,)):
  rng = np.random.default_rng(0)
  return tf.constant(rng.integers(0, 256, size=batch + (16, 16, 3)), tf.uint8)


def _obs(batch=(2,)):
  rng = np.random.default_rng(1)
  return {"image": _image(batch), "state": tf.constant(rng.normal(size=batch + (5,)), tf.float32)}


def _feat(batch=(2,)):
  return tf.constant(np.random.default_rng(2).normal(size=batch + (FEAT,)), tf.float32)


def _rssm_inputs():
  rng = np.random.default_rng(3)
  embed = tf.constant(rng.normal(size=(2, 4, 6)), tf.float32)
  action = tf.constant(rng.uniform(-1, 1, size=(2, 4, 3)), tf.float32)
  is_first = tf.constant([[True, False, False, True], [True, False, False, False]])
  return embed, action, is_first


def _make(name):
  """Builds one layer of each kind and returns ``(layer, run)``, ``run(layer)`` its outputs."""
  if name == "NormDense":
    layer = networks.NormDense(8, name="nd")
    layer.build((None, FEAT))
    return layer, lambda m: m(_feat())
  if name == "NormDenseNoNorm":
    layer = networks.NormDense(8, None, norm=False, scale=0.5, name="nd")
    layer.build((None, FEAT))
    return layer, lambda m: m(_feat((2, 3)))
  if name == "MLP":
    layer = networks.MLP(2, 8, symlog_inputs=True, name="mlp")
    layer.build((None, FEAT))
    return layer, lambda m: m(_feat((2, 3)))
  if name == "ImageEncoder":
    layer = networks.ImageEncoder(4, name="enc")
    layer.build((None, 16, 16, 3))
    return layer, lambda m: m(_image((2, 3)))
  if name == "ImageDecoder":
    layer = networks.ImageDecoder((16, 16, 3), 4, name="dec")
    layer.build((None, FEAT))
    return layer, lambda m: m(_feat((2, 3)))
  if name == "MultiEncoder":
    layer = networks.MultiEncoder(SHAPES, "image", ".*", 4, 1, 8, name="menc")
    return layer, lambda m: m(_obs((2, 3)))
  if name == "MultiDecoder":
    layer = networks.MultiDecoder(SHAPES, "image", ".*", 4, 1, 8, name="mdec")
    layer.build((None, FEAT))
    return layer, lambda m: {k: d.mode() for k, d in m(_feat((2, 3))).items()}
  if name == "RSSM":
    layer = networks.RSSM(8, 8, stoch=2, classes=4, name="rssm")
    layer.build_for(6, 3)

    def run(m):
      post, prior = m.observe(*_rssm_inputs(), tf.constant([1, 2]))
      return {"post": post, "prior": prior, "feat": m.get_feat(post)}

    return layer, run
  if name.startswith("Head"):
    kind = name[len("Head_") :]
    layer = networks.Head(kind, 1, 8, size=3, bins=5, unimix=0.01, outscale=0.5, name="head")
    layer.build((None, FEAT))

    def run_head(m):
      dist = m(_feat((2, 3)))
      out = {"mode": dist.mode()}
      if kind == "normal":
        out["scale"] = dist.scale
      else:
        out["logits"] = dist.logits
      return out

    return layer, run_head
  raise ValueError(name)


NAMES = [
  "NormDense",
  "NormDenseNoNorm",
  "MLP",
  "ImageEncoder",
  "ImageDecoder",
  "MultiEncoder",
  "MultiDecoder",
  "RSSM",
  "Head_twohot",
  "Head_binary",
  "Head_onehot",
  "Head_normal",
]


@pytest.mark.parametrize("name", NAMES)
def test_get_config_round_trip(name):
  layer, _ = _make(name)
  config = layer.get_config()
  clone = type(layer).from_config(config)
  assert clone.get_config() == config
  assert clone.name == layer.name


def test_output_shapes():
  out = _make("NormDense")[0](_feat())
  assert out.shape == (2, 8)
  layer, run = _make("NormDenseNoNorm")
  assert run(layer).shape == (2, 3, 8)
  layer, run = _make("MLP")
  assert run(layer).shape == (2, 3, 8)
  layer, run = _make("ImageEncoder")
  assert run(layer).shape == (2, 3, 4 * 4 * 8)  # 16 -> 8 -> 4 with 4, 8 channels
  assert layer.output_size == 128
  layer, run = _make("ImageDecoder")
  assert run(layer).shape == (2, 3, 16, 16, 3)
  layer, run = _make("MultiEncoder")
  assert layer.cnn_keys == ["image"] and layer.mlp_keys == ["state"]  # log_ keys are not modelled
  assert run(layer).shape == (2, 3, 128 + 8) and layer.output_size == 136
  layer, run = _make("MultiDecoder")
  modes = run(layer)
  assert set(modes) == {"image", "state"}
  assert modes["image"].shape == (2, 3, 16, 16, 3) and modes["state"].shape == (2, 3, 5)
  layer, run = _make("RSSM")
  out = run(layer)
  for key in ("post", "prior"):
    assert out[key]["deter"].shape == (2, 4, 8)
    assert out[key]["logits"].shape == (2, 4, 2, 4)
  assert out["post"]["stoch"].shape == (2, 4, 2, 4)
  assert "stoch" not in out["prior"]  # filtering does not sample the prior
  assert out["feat"].shape == (2, 4, 8 + 2 * 4) and layer.feat_size == 16
  np.testing.assert_allclose(out["post"]["stoch"].numpy().sum(-1), 1.0, atol=1e-6)
  layer, run = _make("Head_twohot")
  assert run(layer)["mode"].shape == (2, 3) and run(layer)["logits"].shape == (2, 3, 5)
  layer, run = _make("Head_binary")
  assert run(layer)["mode"].shape == (2, 3)
  layer, run = _make("Head_onehot")
  assert run(layer)["mode"].shape == (2, 3, 3)
  layer, run = _make("Head_normal")
  out = run(layer)
  assert out["mode"].shape == (2, 3, 3)
  assert np.all(out["scale"].numpy() >= 0.1) and np.all(out["scale"].numpy() <= 1.0)


def test_rssm_imagine_shapes():
  rssm, _ = _make("RSSM")
  start = rssm.initial(5)
  policy_fn = lambda state, seed: tf.one_hot(tf.zeros([5], tf.int32), 3)
  traj = rssm.imagine(policy_fn, start, 4, tf.constant([0, 1]))
  assert traj["deter"].shape == (5, 5, 8) and traj["action"].shape == (5, 5, 3)
  np.testing.assert_allclose(traj["deter"][0].numpy(), start["deter"].numpy())


def test_zero_outscale_head_predicts_zero():
  head = networks.Head("twohot", 2, 8, bins=255, outscale=0.0)
  head.build((None, FEAT))
  assert not np.any(head.out.dense.kernel.numpy())
  np.testing.assert_allclose(head(_feat((3,))).mean().numpy(), 0.0, atol=1e-6)


def _fan_avg(shape):
  receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
  return (shape[-2] + shape[-1]) * receptive / 2


def _assert_uniform(kernel):
  """U(-L, L) with L = sqrt(3 / fan_avg): the 2023 code's ``uniform`` initializer at scale 1."""
  w = kernel.numpy()
  limit = np.sqrt(3 / _fan_avg(w.shape))
  assert 0.95 * limit < np.abs(w).max() <= limit, kernel.name
  np.testing.assert_allclose(w.std(), limit / np.sqrt(3), rtol=0.05, err_msg=kernel.name)
  assert abs(np.mean(np.abs(w) > 0.5 * limit) - 0.5) < 0.05, kernel.name  # Flat, unlike a normal.


def _assert_truncated_normal(kernel):
  """Std sqrt(1 / fan_avg), cut at two of the underlying normal's std: the 2023 code's ``normal``."""
  w = kernel.numpy()
  std = np.sqrt(1 / _fan_avg(w.shape))
  assert np.sqrt(3) * std < np.abs(w).max() <= 2 * std / 0.87962566103423978, kernel.name
  np.testing.assert_allclose(w.std(), std, rtol=0.05, err_msg=kernel.name)


def test_output_and_std_layers_start_uniform_hidden_layers_truncated_normal():
  keras.utils.set_random_seed(0)
  actor = networks.Head("normal", 1, 256, size=256, name="actor")
  actor.build((None, 256))
  _assert_uniform(actor.out.dense.kernel)
  _assert_uniform(actor.std.dense.kernel)
  _assert_truncated_normal(actor.trunk.hidden[0].dense.kernel)
  cont = networks.Head("binary", 1, 256, name="cont")
  cont.build((None, 256))
  _assert_uniform(cont.out.dense.kernel)
  decoder = networks.MultiDecoder({"image": (64, 64, 3), "state": (64,)}, "image", ".*", 16, 1, 256, name="dec")
  decoder.build((None, 256))
  _assert_uniform(decoder.vector_out["state"].kernel)
  _assert_truncated_normal(decoder.mlp.hidden[0].dense.kernel)
  _assert_uniform(decoder.cnn.project.kernel)
  _assert_truncated_normal(decoder.cnn.convs[0].kernel)
  _assert_uniform(decoder.cnn.convs[-1].kernel)
  rssm = networks.RSSM(256, 256, stoch=16, classes=16, name="rssm")
  rssm.build_for(256, 4)
  _assert_uniform(rssm.img_stats.kernel)
  _assert_uniform(rssm.obs_stats.kernel)
  _assert_truncated_normal(rssm.gru.dense.kernel)
  for bias in (actor.out.dense.bias, actor.std.dense.bias, decoder.vector_out["state"].bias):
    assert not np.any(bias.numpy())


def test_rssm_resets_to_learned_initial_state_on_first():
  rssm, _ = _make("RSSM")
  rssm.initial_deter.assign(np.linspace(-1, 1, 8).astype(np.float32))
  embed, action, _ = _rssm_inputs()
  rng = np.random.default_rng(4)
  state = {
    "deter": tf.constant(rng.normal(size=(2, 8)), tf.float32),
    "stoch": tf.one_hot(rng.integers(0, 4, size=(2, 2)), 4),
    "logits": tf.zeros([2, 2, 4]),
  }
  first = tf.constant([True, True])
  seed = tf.constant([5, 6])
  post_a, prior_a = rssm.obs_step(state, action[:, 0], embed[:, 0], first, seed)
  post_b, prior_b = rssm.obs_step(rssm.initial(2), tf.zeros([2, 3]), embed[:, 0], first, seed)
  for key in ("deter", "stoch", "logits"):
    np.testing.assert_allclose(post_a[key].numpy(), post_b[key].numpy(), atol=1e-6)
  for key in ("deter", "logits"):
    np.testing.assert_allclose(prior_a[key].numpy(), prior_b[key].numpy(), atol=1e-6)
  init = rssm.initial(2)
  np.testing.assert_allclose(init["deter"].numpy()[0], np.tanh(np.linspace(-1, 1, 8)), rtol=1e-5)
  # Without is_first the incoming state matters.
  post_c, _ = rssm.obs_step(state, action[:, 0], embed[:, 0], tf.constant([False, False]), seed)
  assert not np.allclose(post_c["deter"].numpy(), post_a["deter"].numpy())


def _dtypes(tree):
  return {t.dtype for t in tf.nest.flatten(tree)}


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision(precision, name):
  compute = tf.as_dtype(keras.mixed_precision.global_policy().compute_dtype)
  layer, run = _make(name)
  assert layer.weights
  assert {v.dtype for v in layer.weights} == {tf.float32}
  if name.startswith("Head"):
    assert layer.trunk(_feat()).dtype == compute
    assert _dtypes(run(layer)) == {tf.float32}  # distributions compute in float32
  elif name == "MultiDecoder":
    assert layer.cnn(_feat()).dtype == compute
    assert layer.mlp(_feat()).dtype == compute
    assert _dtypes(run(layer)) == {tf.float32}
  elif name == "RSSM":
    out = run(layer)
    assert out["post"]["deter"].dtype == compute and out["post"]["stoch"].dtype == compute
    assert out["post"]["logits"].dtype == tf.float32
    assert out["feat"].dtype == compute
  else:
    assert _dtypes(run(layer)) == {compute}


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_save_load_gives_identical_outputs(name, tmp_path):
  layer, run = _make(name)
  # Move every variable away from its initial value so that loading is observable.
  rng = np.random.default_rng(7)
  for var in layer.weights:
    var.assign(var + rng.normal(size=var.shape).astype(np.float32) * 0.1)
  expected = run(layer)
  path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))
  fresh, _ = _make(name)
  before = run(fresh)
  assert not all(np.allclose(a, b) for a, b in zip(tf.nest.flatten(before), tf.nest.flatten(expected)))
  tf.train.Checkpoint(layer=fresh).read(path).assert_consumed()
  tf.nest.map_structure(lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()), run(fresh), expected)


def test_heads_produce_expected_distributions():
  kinds = {
    "twohot": distributions.TwoHotSymlog,
    "binary": distributions.Bernoulli,
    "onehot": distributions.OneHotCategorical,
    "normal": distributions.BoundedNormal,
  }
  for kind, cls in kinds.items():
    head = networks.Head(kind, 1, 8, size=3, bins=5)
    head.build((None, FEAT))
    assert isinstance(head(_feat()), cls)
  with pytest.raises(ValueError, match="unknown head output"):
    networks.Head("gauss", 1, 8)
