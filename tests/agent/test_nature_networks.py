"""The current generation's layers (arXiv 2301.04104v2): hand-computed values, NumPy steps, precision,
save/load, and parameter counts equal to the author's current code (reference_install_current.md)."""

import math
import zlib

import numpy as np
import pytest
import tensorflow as tf
from nature_testlib import SIZES, block_gru_names, image_names

from dreamer_tf.agent import networks
from dreamer_tf.agent.networks.block_gru import UPDATE_BIAS
from dreamer_tf.agent.networks.truncated_normal_fan_in import fan_in

keras = tf.keras

EPS = 1e-4


# ---------------------------------------------------------------------------------------------------------
# NumPy references, written from the author's description (dreamerv3/rssm.py, embodied/jax/nets.py).


def np_rms_norm(x, scale):
  x = np.asarray(x, np.float64)
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + EPS) * scale


def np_silu(x):
  return x / (1 + np.exp(-x))


def np_sigmoid(x):
  return 1 / (1 + np.exp(-x))


def np_block_diagonal(kernel):
  """The ``[in, units]`` dense kernel equivalent to a ``[blocks, in / blocks, units / blocks]`` one."""
  blocks, rows, cols = kernel.shape
  full = np.zeros((blocks * rows, blocks * cols))
  for k in range(blocks):
    full[k * rows : (k + 1) * rows, k * cols : (k + 1) * cols] = kernel[k]
  return full


def np_norm_dense(layer, x):
  """RMSNormDense with SiLU from the layer's weights."""
  kernel, bias = layer.dense.kernel.numpy(), layer.dense.bias.numpy()
  return np_silu(np_rms_norm(x @ kernel + bias, layer.norm.scale.numpy()))


def np_block_gru(gru, deter, stoch, action):
  """One step of the block GRU, with block layers as dense layers over block-diagonal kernels."""
  action = action / np.maximum(1, np.abs(action))
  shared = np.concatenate([np_norm_dense(gru.inputs_in[i], x) for i, x in enumerate((deter, stoch, action))], -1)
  g, n = gru.blocks, deter.shape[0]
  per_block = np.concatenate([deter.reshape(n, g, -1), np.repeat(shared[:, None], g, 1)], -1)
  x = per_block.reshape(n, -1)
  for layer, norm in zip(gru.hidden_layers, gru.hidden_norms):
    x = x @ np_block_diagonal(layer.kernel.numpy()) + layer.bias.numpy()
    x = np_silu(np_rms_norm(x, norm.scale.numpy()))
  x = x @ np_block_diagonal(gru.gates.kernel.numpy()) + gru.gates.bias.numpy()
  x = x.reshape(n, g, 3, -1)  # each block's outputs are [reset, cand, update] of its state slice
  reset, cand, update = (x[:, :, i].reshape(n, -1) for i in range(3))
  cand = np.tanh(np_sigmoid(reset) * cand)
  update = np_sigmoid(update - 1)
  return update * cand + (1 - update) * deter


def _randomize(layer, seed=7, scale=0.5):
  """Moves every variable (norm scales included) away from its initial value."""
  rng = np.random.default_rng(seed)
  for var in layer.weights:
    var.assign(var + rng.normal(size=var.shape).astype(np.float32) * scale)


# ---------------------------------------------------------------------------------------------------------
# Hand-computed values.


def test_rms_norm_by_hand():
  norm = networks.RMSNorm()
  norm.build((None, 2))
  # mean([3^2, 4^2]) = 12.5: [3, 4] / sqrt(12.5 + 1e-4).
  out = norm(tf.constant([[3.0, 4.0]]))
  np.testing.assert_allclose(out.numpy(), [[3 / math.sqrt(12.5001), 4 / math.sqrt(12.5001)]], rtol=1e-6)
  np.testing.assert_allclose(out.numpy(), [[0.848524, 1.131365]], rtol=1e-5)
  norm.scale.assign([2.0, 0.5])  # a learned scale, no offset: zeros stay zeros
  np.testing.assert_allclose(norm(tf.constant([[3.0, 4.0]])).numpy(), [[1.697047, 0.565682]], rtol=1e-5)
  np.testing.assert_array_equal(norm(tf.zeros([1, 2])).numpy(), [[0.0, 0.0]])
  # eps = 1e-4 matters for small inputs: [0.01, 0.01] -> 0.01 / sqrt(1e-4 + 1e-4).
  np.testing.assert_allclose(norm(tf.constant([[0.01, 0.01]])).numpy(), [[2 * 0.7071068, 0.5 * 0.7071068]], rtol=1e-5)
  assert len(norm.weights) == 1  # the scale only


@pytest.mark.parametrize("precision", ["mixed_bfloat16"], indirect=True)
def test_rms_norm_computes_in_float32(precision):
  norm = networks.RMSNorm()
  x = tf.constant(np.random.default_rng(0).normal(3.0, 1.0, size=(4, 1000)), tf.bfloat16)
  norm.build(x.shape)
  norm.scale.assign(np.linspace(0.5, 1.5, 1000).astype(np.float32))
  out = norm(x)
  assert out.dtype == tf.bfloat16 and norm.scale.dtype == tf.float32
  # The float32 result rounded once to bfloat16, bit for bit (bfloat16 statistics would differ).
  expected = tf.cast(np_rms_norm(tf.cast(x, tf.float32).numpy(), norm.scale.numpy()).astype(np.float32), tf.bfloat16)
  np.testing.assert_array_equal(tf.cast(out, tf.float32).numpy(), tf.cast(expected, tf.float32).numpy())


def test_block_linear_equals_dense_with_block_diagonal_kernel():
  layer = networks.BlockLinear(6, 3)
  layer.build((None, 12))
  assert layer.kernel.shape == (3, 4, 2) and layer.bias.shape == (6,)
  _randomize(layer)
  x = np.random.default_rng(1).normal(size=(2, 5, 12))
  expected = x @ np_block_diagonal(layer.kernel.numpy()) + layer.bias.numpy()
  np.testing.assert_allclose(layer(tf.constant(x, tf.float32)).numpy(), expected, rtol=1e-5, atol=1e-5)
  # Block k of the output depends only on block k of the input.
  x2 = x.copy()
  x2[..., 4:8] += 1.0
  out, out2 = layer(tf.constant(x, tf.float32)).numpy(), layer(tf.constant(x2, tf.float32)).numpy()
  np.testing.assert_array_equal(out[..., [0, 1, 4, 5]], out2[..., [0, 1, 4, 5]])
  assert not np.allclose(out[..., 2:4], out2[..., 2:4])
  with pytest.raises(ValueError, match="multiple of blocks"):
    networks.BlockLinear(7, 2)


def test_truncated_normal_fan_in():
  # The fan-in of a block kernel is its full input width, of a conv kernel kh * kw * in.
  assert fan_in((256, 512)) == 256 and fan_in((8, 256, 64)) == 2048 and fan_in((5, 5, 3, 8)) == 75
  keras.utils.set_random_seed(0)
  for shape in ((256, 512), (8, 256, 64), (5, 5, 16, 32)):
    w = networks.TruncatedNormalFanIn()(shape).numpy()
    std = 1.1368 / math.sqrt(fan_in(shape))  # of the normal before truncation at 2 of its std
    assert np.abs(w).max() <= 2 * std and np.abs(w).max() > 1.9 * std, shape
    np.testing.assert_allclose(w.std(), 0.8796256610342398 * std, rtol=0.03, err_msg=str(shape))
    np.testing.assert_allclose(w.mean(), 0.0, atol=0.05 * std)
  w = networks.TruncatedNormalFanIn(0.01)((256, 512)).numpy()
  assert 0.019 * 1.1368 / 16 < np.abs(w).max() <= 0.02 * 1.1368 / 16
  assert not np.any(networks.TruncatedNormalFanIn(0.0)((4, 4)).numpy())
  # Layers use it for kernels and start their biases at zero.
  dense = networks.RMSNormDense(512)
  dense.build((None, 256))
  assert np.abs(dense.dense.kernel.numpy()).max() <= 2 * 1.1368 / 16 and not np.any(dense.dense.bias.numpy())
  block = networks.BlockLinear(512, 8)
  block.build((None, 2048))
  assert 1.9 * 1.1368 / math.sqrt(2048) < np.abs(block.kernel.numpy()).max() <= 2 * 1.1368 / math.sqrt(2048)


def _block_gru(blocks=2, layers=1):
  gru = networks.BlockGRU(8, 3, blocks=blocks, layers=layers, name="gru")
  gru.build_for(6, 3)
  return gru


def _gru_inputs(n=4):
  rng = np.random.default_rng(3)
  deter = rng.normal(size=(n, 8)).astype(np.float32)
  stoch = rng.normal(size=(n, 2, 3)).astype(np.float32)
  action = rng.uniform(-3, 3, size=(n, 3)).astype(np.float32)  # beyond [-1, 1]: scaled down
  return deter, stoch, action


@pytest.mark.parametrize("blocks,layers", [(2, 1), (4, 2), (1, 0)])
def test_block_gru_step_matches_numpy(blocks, layers):
  gru = _block_gru(blocks, layers)
  _randomize(gru)
  deter, stoch, action = _gru_inputs()
  out = gru(tf.constant(deter), tf.constant(stoch), tf.constant(action))
  expected = np_block_gru(gru, deter, stoch.reshape(4, -1), action)
  np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
  assert np.abs(out.numpy() - deter).max() > 0.1


def test_block_gru_update_bias():
  # With all weights zero every gate logit is 0: cand = tanh(0.5 * 0) = 0, update = sigmoid(-1), so the
  # state decays by 1 - sigmoid(-1) = 0.7310586 per step.
  assert UPDATE_BIAS == -1.0
  gru = _block_gru()
  for var in gru.weights:
    var.assign(tf.zeros_like(var))
  deter, stoch, action = _gru_inputs()
  out = gru(tf.constant(deter), tf.constant(stoch), tf.constant(action))
  np.testing.assert_allclose(out.numpy(), deter * 0.7310586, rtol=1e-6)
  # A candidate of +1 everywhere (large cand bias, zero reset and update logits): h + sigmoid(-1) (1 - h).
  gates_bias = np.zeros((2, 3, 4), np.float32)  # [blocks, (reset, cand, update), deter / blocks]
  gates_bias[:, 1] = 20.0
  gru.gates.bias.assign(gates_bias.reshape(-1))
  out = gru(tf.constant(deter), tf.constant(stoch), tf.constant(action))
  np.testing.assert_allclose(out.numpy(), 0.2689414 + 0.7310586 * deter, rtol=1e-5)


def test_pooling_encoder_matches_numpy_with_1x1_kernels():
  enc = networks.PoolingImageEncoder(2, mults=(1, 2), kernel=1, name="enc")
  enc.build((None, 8, 8, 3))
  _randomize(enc)
  image = np.random.default_rng(4).integers(0, 256, size=(2, 8, 8, 3)).astype(np.uint8)
  x = image / 255.0 - 0.5
  for conv, norm in zip(enc.convs, enc.norms):
    x = x @ conv.kernel.numpy()[0, 0] + conv.bias.numpy()
    n, h, w, c = x.shape
    x = x.reshape(n, h // 2, 2, w // 2, 2, c).max((2, 4))
    x = np_silu(np_rms_norm(x, norm.scale.numpy()))
  out = enc(tf.constant(image))
  assert out.shape == (2, 2 * 2 * 4) and enc.output_size == 16
  np.testing.assert_allclose(out.numpy(), x.reshape(2, -1), rtol=1e-5, atol=1e-5)


def test_upsampling_decoder_matches_numpy_with_1x1_kernels():
  dec = networks.UpsamplingImageDecoder((8, 8, 3), 2, 3, mults=(1, 2), kernel=1, bspace=2, name="dec")
  dec.build_for(6, 4)
  _randomize(dec)
  rng = np.random.default_rng(5)
  deter, stoch = rng.normal(size=(2, 6)), rng.normal(size=(2, 2, 2))
  # Spatial projection: minres 2, channels 4 = 2 blocks x 2; block g fills channels [2g, 2g + 2).
  x0 = deter @ np_block_diagonal(dec.deter_space.kernel.numpy()) + dec.deter_space.bias.numpy()
  x0 = x0.reshape(2, 2, 2, 2, 2).transpose(0, 2, 3, 1, 4).reshape(2, 2, 2, 4)
  x1 = np_norm_dense(dec.stoch_hidden, stoch.reshape(2, 4))
  x1 = (x1 @ dec.stoch_space.kernel.numpy() + dec.stoch_space.bias.numpy()).reshape(2, 2, 2, 4)
  x = np_silu(np_rms_norm(x0 + x1, dec.space_norm.scale.numpy()))
  for conv, norm in zip(dec.convs, dec.norms):
    x = x.repeat(2, 1).repeat(2, 2) @ conv.kernel.numpy()[0, 0] + conv.bias.numpy()
    x = np_silu(np_rms_norm(x, norm.scale.numpy()))
  x = np_sigmoid(x.repeat(2, 1).repeat(2, 2) @ dec.out.kernel.numpy()[0, 0] + dec.out.bias.numpy())
  out = dec({"deter": tf.constant(deter, tf.float32), "stoch": tf.constant(stoch, tf.float32)})
  assert out.shape == (2, 8, 8, 3)
  np.testing.assert_allclose(out.numpy(), x, rtol=1e-5, atol=1e-6)
  assert [c.filters for c in dec.convs] == [2] and dec.out.filters == 3  # stage 0 has depth * mults[0]


def test_rms_mlp_matches_numpy():
  mlp = networks.MLP(3, 5, norm_eps=1e-4, symlog_inputs=True, norm="rms")
  mlp.build((None, 4))
  assert all(isinstance(layer, networks.RMSNormDense) for layer in mlp.hidden)
  _randomize(mlp)
  x = np.random.default_rng(6).normal(0, 10, size=(3, 4))
  expected = np.sign(x) * np.log1p(np.abs(x))
  for layer in mlp.hidden:
    expected = np_norm_dense(layer, expected)
  np.testing.assert_allclose(mlp(tf.constant(x, tf.float32)).numpy(), expected, rtol=1e-5, atol=1e-6)
  assert isinstance(networks.MLP(1, 5).hidden[0], networks.NormDense)  # the 2023 default is unchanged
  with pytest.raises(ValueError, match="unknown MLP norm"):
    networks.MLP(1, 5, norm="batch")


# ---------------------------------------------------------------------------------------------------------
# Every layer: config round trip, mixed_bfloat16, save/load.


def _make(name):
  """Builds one layer of each kind and returns ``(layer, run)``, ``run(layer)`` its output."""
  rng = np.random.default_rng(2)
  feat = tf.constant(rng.normal(size=(2, 3, 12)), tf.float32)
  if name == "RMSNorm":
    layer = networks.RMSNorm(name="norm")
    layer.build((None, 12))
    return layer, lambda m: m(feat)
  if name == "BlockLinear":
    layer = networks.BlockLinear(8, 4, name="block")
    layer.build((None, 12))
    return layer, lambda m: m(feat)
  if name == "RMSNormDense":
    layer = networks.RMSNormDense(8, name="dense")
    layer.build((None, 12))
    return layer, lambda m: m(feat)
  if name == "MLP_rms":
    layer = networks.MLP(2, 8, norm_eps=1e-4, symlog_inputs=True, norm="rms", name="mlp")
    layer.build((None, 12))
    return layer, lambda m: m(feat)
  if name == "BlockGRU":
    layer = _block_gru()
    return layer, lambda m: m(*(tf.constant(x) for x in _gru_inputs()))
  if name == "PoolingImageEncoder":
    layer = networks.PoolingImageEncoder(2, mults=(2, 3), name="enc")
    layer.build((None, 16, 16, 3))
    image = tf.constant(rng.integers(0, 256, size=(2, 3, 16, 16, 3)), tf.uint8)
    return layer, lambda m: m(image)
  if name == "UpsamplingImageDecoder":
    layer = networks.UpsamplingImageDecoder((16, 16, 3), 2, 4, mults=(2, 4), bspace=4, name="dec")
    layer.build_for(8, 6)
    state = {"deter": tf.constant(rng.normal(size=(2, 3, 8)), tf.float32), "stoch": tf.ones([2, 3, 2, 3])}
    return layer, lambda m: m(state)
  raise ValueError(name)


NAMES = [
  "RMSNorm",
  "BlockLinear",
  "RMSNormDense",
  "MLP_rms",
  "BlockGRU",
  "PoolingImageEncoder",
  "UpsamplingImageDecoder",
]


@pytest.mark.parametrize("name", NAMES)
def test_get_config_round_trip(name):
  layer, _ = _make(name)
  config = layer.get_config()
  clone = type(layer).from_config(config)
  assert clone.get_config() == config and clone.name == layer.name


def test_output_shapes():
  shapes = {name: tuple(run(layer).shape) for name, (layer, run) in ((n, _make(n)) for n in NAMES)}
  assert shapes == {
    "RMSNorm": (2, 3, 12),
    "BlockLinear": (2, 3, 8),
    "RMSNormDense": (2, 3, 8),
    "MLP_rms": (2, 3, 8),
    "BlockGRU": (4, 8),
    "PoolingImageEncoder": (2, 3, 4 * 4 * 6),  # 16 -> 8 -> 4 with 4, 6 channels
    "UpsamplingImageDecoder": (2, 3, 16, 16, 3),
  }
  layer, run = _make("UpsamplingImageDecoder")
  image = run(layer).numpy()
  assert image.min() > 0 and image.max() < 1  # sigmoid output


@pytest.mark.parametrize("precision", ["mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("name", NAMES)
def test_mixed_bfloat16(precision, name):
  layer, run = _make(name)
  assert layer.weights and {v.dtype for v in layer.weights} == {tf.float32}
  out = run(layer)
  assert out.dtype == tf.bfloat16
  assert np.all(np.isfinite(tf.cast(out, tf.float32).numpy()))
  # The same weights in float32 give the same output up to bfloat16 rounding.
  keras.mixed_precision.set_global_policy("float32")  # the fixture restores float32 afterwards anyway
  reference, _ = _make(name)
  for src, dst in zip(layer.weights, reference.weights):
    dst.assign(src)
  np.testing.assert_allclose(tf.cast(out, tf.float32).numpy(), run(reference).numpy(), rtol=0.1, atol=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_xla_compiled_equals_eager(name):
  layer, run = _make(name)
  _randomize(layer, scale=0.1)
  compiled = tf.function(lambda: run(layer), jit_compile=True)()
  np.testing.assert_allclose(compiled.numpy(), run(layer).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_save_load_gives_identical_outputs(name, tmp_path):
  layer, run = _make(name)
  _randomize(layer, scale=0.1)
  expected = run(layer)
  path = tf.train.Checkpoint(layer=layer).write(str(tmp_path / "ckpt"))
  fresh, _ = _make(name)
  assert not np.allclose(run(fresh).numpy(), expected.numpy())
  tf.train.Checkpoint(layer=fresh).read(path).assert_consumed()
  np.testing.assert_array_equal(run(fresh).numpy(), expected.numpy())


# ---------------------------------------------------------------------------------------------------------
# Parameter counts against the author's current code (its own agent.params for a 64x64x3 image and 18
# actions, /work/shared/reference/reference_install_current.md): encoder, dynamics (RSSM), decoder.

REFERENCE_COUNTS = {  # enc, dyn, dec
  "size1m": (14_304, 377_472, 80_595),
  "size12m": (220_416, 5_982_720, 1_272_003),
  "size25m": (493_824, 13_446_912, 2_857_635),
  "size50m": (876_032, 23_892_992, 5_076_355),
  "size100m": (1_966_848, 53_730_816, 11_413_059),
  "size200m": (3_492_864, 95_496_192, 20_282_115),
  "size400m": (7_850_496, 214_809_600, 45_617_283),
}
REFERENCE_HEAD_COUNTS = {  # rew, con, pol (18 discrete actions), val
  "size1m": (57_663, 41_153, 50_706, 66_111),
  "size12m": (721_407, 656_129, 792_594, 853_503),
  "size25m": (1_573_503, 1_475_713, 1_778_706, 1_869_951),
  "size50m": (2_753_279, 2_622_977, 3_158_034, 3_279_615),
  "size100m": (6_095_871, 5_900_545, 7_096_338, 7_278_591),
  "size200m": (10_749_183, 10_488_833, 12_607_506, 12_850_431),
  "size400m": (23_987_967, 23_597_569, 28_348_434, 28_712_703),
}
# The three largest allocate 0.3 to 1.1 GB of weights and take seconds to initialise.
LARGE = ("size100m", "size200m", "size400m")
SIZE_PARAMS = [pytest.param(s, marks=pytest.mark.slow) if s in LARGE else s for s in SIZES]


def _count(layers):
  return sum(int(np.prod(v.shape)) for layer in layers for v in layer.weights)


def _rssm_layers(deter, hidden, classes, embed_size, actions, stoch=32):
  """The author's RSSM (dreamerv3/rssm.py) as :class:`BlockRSSM`: block GRU core (``dynin*``, ``dynhid0``,
  ``dyngru``), prior 2 x RMSNormDense(hidden) on ``deter`` then logits, posterior 1 x
  RMSNormDense(hidden) on ``[deter, tokens]`` then logits."""
  rssm = networks.BlockRSSM(deter, hidden, stoch, classes, blocks=8, prior_layers=2, post_layers=1)
  rssm.build_for(embed_size, actions)
  return [rssm]


@pytest.mark.parametrize("size", SIZE_PARAMS)
def test_parameter_counts_equal_the_author_code(size):
  deter, hidden, classes, depth, units = SIZES[size]
  enc = networks.PoolingImageEncoder(depth)
  enc.build((None, 64, 64, 3))
  assert enc.output_size == 4 * 4 * 4 * depth
  dyn = _rssm_layers(deter, hidden, classes, enc.output_size, 18)
  dec = networks.UpsamplingImageDecoder((64, 64, 3), depth, units)
  dec.build_for(deter, 32 * classes)
  assert (_count([enc]), _count(dyn), _count([dec])) == REFERENCE_COUNTS[size]


@pytest.mark.parametrize("size", SIZE_PARAMS)
def test_head_counts_equal_the_author_code(size):
  """Reward (symexp twohot, 255 bins) and continue (binary), 1 layer; policy (18 discrete actions) and
  value (symexp twohot), 3 layers: :class:`Head` with ``norm='rms'`` on ``concat(deter, flat stoch)``."""
  deter, _, classes, _, units = SIZES[size]
  feat = deter + 32 * classes
  counts = []
  for output, layers, outscale in (("symexp_twohot", 1, 0.0), ("binary", 1, 1.0), ("onehot", 3, 0.01),
                                   ("symexp_twohot", 3, 0.0)):  # fmt: skip
    head = networks.Head(output, layers, units, size=18, bins=255, outscale=outscale, norm="rms", norm_eps=1e-4)
    head.build((None, feat))
    counts.append(_count([head]))
  assert tuple(counts) == REFERENCE_HEAD_COUNTS[size]


# ---------------------------------------------------------------------------------------------------------
# Outputs equal the author's code from the same weights: dreamerv3/rssm.py (RSSM._core, Encoder, Decoder)
# of danijar/dreamerv3 e3f0224 run with jax 0.4.33 on CPU in float32 (deter 64, hidden 12, 4 x 3 latents,
# 5 actions, 8 blocks; 32x32x3 images, depth 2, mults (2, 3, 4), units 6, bspace 4). Every parameter was
# set to uniform(-0.5, 0.5) (scales 1 + that) from a generator seeded with the CRC32 of the author's
# parameter name, and the inputs come from default_rng(0) as in _author_inputs. Recorded: the first 6
# outputs of each example, the sum and the sum of squares.
AUTHOR_OUTPUTS = {
  "core": (
    [0.03996111452579498, 0.22076089680194855, 0.5793097615242004, 0.035418931394815445, -0.16197755932807922,
     0.10640381276607513, 0.24322639405727386, 0.028344660997390747, 1.2766203880310059, 0.8482480645179749,
     0.6474847197532654, -1.784280776977539],
    4.4622273445129395, 63.316585540771484,
  ),
  "tokens": (
    [-0.19420276582241058, 1.2826390266418457, -0.1402396708726883, 0.0113245639950037, -0.1350352019071579,
     1.114464282989502, -0.07961542904376984, 1.3176237344741821, -0.08525339514017105, 0.09436503052711487,
     -0.14770589768886566, 1.3126102685928345],
    133.2692413330078, 165.9138946533203,
  ),
  "image": (  # pixels (0, 0) and (0, 1), 3 channels, of each example
    [0.2300642877817154, 0.228749617934227, 0.7085416913032532, 0.14605656266212463, 0.4037523865699768,
     0.7028247117996216, 0.9151889085769653, 0.4109046161174774, 0.06538236141204834, 0.9239698052406311,
     0.7396466135978699, 0.10031279176473618],
    2806.775146484375, 1691.7454833984375,
  ),
}  # fmt: skip


def _author_inputs():
  rng = np.random.default_rng(0)
  deter = rng.normal(size=(2, 64)).astype(np.float32)
  stoch = rng.normal(size=(2, 4, 3)).astype(np.float32)
  action = rng.uniform(-2, 2, size=(2, 5)).astype(np.float32)
  image = rng.integers(0, 256, size=(2, 1, 32, 32, 3)).astype(np.uint8)[:, 0]
  return deter, stoch, action, image


def _author_names(gru, enc, dec):
  """The author's parameter name of each variable (``dreamerv3/rssm.py`` module names)."""
  names = {}
  block_gru_names(names, "rssm", gru)
  image_names(names, enc, dec)
  return names


def test_outputs_equal_the_author_code():
  gru = networks.BlockGRU(64, 12, blocks=8, layers=1)
  gru.build_for(12, 5)
  enc = networks.PoolingImageEncoder(2, mults=(2, 3, 4))
  enc.build((None, 32, 32, 3))
  dec = networks.UpsamplingImageDecoder((32, 32, 3), 2, 6, mults=(2, 3, 4), bspace=4)
  dec.build_for(64, 12)
  names = _author_names(gru, enc, dec)
  assert len(names) == len(gru.weights) + len(enc.weights) + len(dec.weights) == 39
  for name, var in names.items():
    value = np.random.default_rng(zlib.crc32(name.encode())).uniform(-0.5, 0.5, size=var.shape)
    var.assign(value.astype(np.float32) + (1.0 if name.endswith("/scale") else 0.0))
  deter, stoch, action, image = _author_inputs()
  outputs = {
    "core": gru(deter, stoch, action).numpy(),
    "tokens": enc(image).numpy(),
    "image": dec({"deter": deter, "stoch": stoch}).numpy()[:, 0, :2],
  }
  full_image = dec({"deter": deter, "stoch": stoch}).numpy()
  for key, (first, total, squares) in AUTHOR_OUTPUTS.items():
    out = outputs[key]
    head = out.reshape(-1, 6) if key == "image" else out[:, :6]
    np.testing.assert_allclose(head.ravel(), first, rtol=1e-5, atol=1e-6, err_msg=key)
    whole = full_image if key == "image" else out
    np.testing.assert_allclose([whole.sum(), np.square(whole).sum()], [total, squares], rtol=1e-5, err_msg=key)
