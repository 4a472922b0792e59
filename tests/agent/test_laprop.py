"""The current generation's optimizer (AGC -> RMS scaling -> momentum -> warm-up lr) against NumPy."""

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent.laprop import LaProp

keras = tf.keras

BETA_1, BETA_2 = 0.9, 0.999


def numpy_laprop(param, grads, lr, agc=0.3, pmin=1e-3, eps=1e-20, warmup=0):
  """The author's optax chain in float64: clip_by_agc, scale_by_rms, scale_by_momentum, lr schedule."""
  param = np.array(param, np.float64)
  nu, mu = np.zeros_like(param), np.zeros_like(param)
  for t, g in enumerate(grads, 1):
    g = np.asarray(g, np.float64)
    if agc:
      upper = agc * max(pmin, np.linalg.norm(param.ravel()))
      g = g / max(1.0, np.linalg.norm(g.ravel()) / upper)
    nu = BETA_2 * nu + (1 - BETA_2) * g * g
    scaled = g / (np.sqrt(nu / (1 - BETA_2**t)) + eps)
    mu = BETA_1 * mu + (1 - BETA_1) * scaled
    lr_t = lr * min(t - 1, warmup) / warmup if warmup else lr
    param = param - lr_t * mu / (1 - BETA_1**t)
  return param


def test_two_updates_by_hand():
  # Without clipping and warm-up the first update is lr * g / |g| (bias-corrected nu = g^2, mu = r);
  # the second, with g = 2: nu = 0.999 * 0.001 + 0.001 * 4 = 0.004999, r = 2 / sqrt(nu / 0.001999),
  # mu = 0.9 * 0.1 + 0.1 * r, update = lr * mu / 0.19.
  var = tf.Variable([1.0])
  opt = LaProp(learning_rate=0.1, agc=0.0, warmup=0)
  opt.apply_gradients([(tf.constant([1.0]), var)])
  np.testing.assert_allclose(var.numpy(), [0.9], rtol=1e-6)
  opt.apply_gradients([(tf.constant([2.0]), var)])
  second = 0.1 * (0.09 + 0.1 * 2 / np.sqrt(0.004999 / 0.001999)) / 0.19
  np.testing.assert_allclose(var.numpy(), [0.9 - second], rtol=1e-6)
  np.testing.assert_allclose(second, 0.9 - 0.7860673013044879, rtol=1e-12)  # the NumPy chain agrees


def test_agc_by_hand():
  opt = LaProp()
  # ||w|| = 5, so gradients are clipped to norm 0.3 * 5 = 1.5: [6, 8] (norm 10) -> [0.9, 1.2].
  w = tf.constant([[3.0], [4.0]])
  np.testing.assert_allclose(opt.clip_by_agc(tf.constant([[6.0], [8.0]]), w).numpy(), [[0.9], [1.2]], rtol=1e-6)
  # Below the bound the gradient is unchanged.
  np.testing.assert_allclose(opt.clip_by_agc(tf.constant([[0.3], [0.4]]), w).numpy(), [[0.3], [0.4]], rtol=1e-6)
  # A zero parameter counts as norm pmin = 1e-3: [0.003, 0.004] (norm 5e-3) -> norm 3e-4.
  clipped = opt.clip_by_agc(tf.constant([0.003, 0.004]), tf.zeros([2]))
  np.testing.assert_allclose(clipped.numpy(), [1.8e-4, 2.4e-4], rtol=1e-5)
  # The norm is over the whole tensor (one bound per variable), not per row or column.
  w = tf.constant([[1.0, 0.0], [0.0, 0.0]])
  np.testing.assert_allclose(opt.clip_by_agc(tf.constant([[0.0, 0.0], [0.0, 0.6]]), w).numpy(), [[0, 0], [0, 0.3]])
  assert LaProp(agc=0.0).clip_by_agc(tf.constant([6.0, 8.0]), tf.zeros([2])).numpy().tolist() == [6.0, 8.0]


def test_linear_warmup_starts_at_zero():
  opt = LaProp(learning_rate=4e-5, warmup=1000)
  lrs = [float(opt.learning_rate_at(t)) for t in (1, 2, 501, 1001, 1002, 10**6)]
  np.testing.assert_allclose(lrs, [0.0, 4e-8, 2e-5, 4e-5, 4e-5, 4e-5], rtol=1e-6)
  assert float(LaProp(learning_rate=3e-4, warmup=0).learning_rate_at(1)) == pytest.approx(3e-4)
  # The first update only fills the moments: the variable stays, the second update moves it by lr / warmup.
  var = tf.Variable([1.0, -2.0])
  opt = LaProp(learning_rate=0.1, warmup=10)
  opt.apply_gradients([(tf.constant([0.1, 0.2]), var)])
  np.testing.assert_array_equal(var.numpy(), [1.0, -2.0])
  assert np.all(opt._nus[0].numpy() > 0) and np.all(opt._mus[0].numpy() > 0)
  opt.apply_gradients([(tf.constant([0.1, 0.2]), var)])
  np.testing.assert_allclose(var.numpy(), [1.0 - 0.01, -2.0 - 0.01], rtol=1e-5)  # same sign: |mu_hat| = 1


# Four updates of a kernel and a zero bias through the author's own chain: embodied/jax/opt.py's clip_by_agc(0.3),
# scale_by_rms(0.999, 1e-20) and scale_by_momentum(0.9) of danijar/dreamerv3 e3f0224, followed by
# optax.scale_by_learning_rate of its warm-up schedule as dreamerv3/agent.py:_make_opt builds it (lr 1e-2,
# warmup 2), run with jax 0.4.33 and optax 0.2.5 on CPU in float32. AGC clips the kernel's gradients on
# updates 1 and 2 and the bias's (norm below 3e-4 at first: pmin) on all four.
AUTHOR_INIT = {"kernel": [[0.5, -1.0, 0.25], [2.0, 0.0, -0.75]], "bias": [0.0, 0.0, 0.0]}
AUTHOR_GRADS = [
  {"kernel": [[0.3, -0.2, 0.1], [0.05, 0.4, -0.6]], "bias": [1e-3, -2e-3, 5e-4]},
  {"kernel": [[-2.0, 1.5, 0.5], [1.0, -0.5, 0.25]], "bias": [-1e-3, 1e-3, 0.0]},
  {"kernel": [[0.1, 0.1, -0.1], [0.2, 0.0, 0.3]], "bias": [2e-3, 2e-3, -1e-3]},
  {"kernel": [[0.02, -0.4, 0.3], [-0.1, 0.2, 0.05]], "bias": [1e-4, -3e-3, 4e-3]},
]
AUTHOR_RESULT = {
  "kernel": [
    [0.5009303689002991, -1.001774787902832, 0.23375187814235687],
    [1.976030945777893, -0.006165576167404652, -0.7497147917747498],
  ],
  "bias": [-0.0076630571857094765, -0.003793372306972742, -0.00264932494610548],
}


@pytest.mark.parametrize("jit_compile", [False, True])
def test_matches_the_author_optax_chain(jit_compile):
  keys = ("kernel", "bias")
  variables = [tf.Variable(np.array(AUTHOR_INIT[k], np.float32)) for k in keys]
  opt = LaProp(learning_rate=1e-2, warmup=2)
  apply = tf.function(lambda grads: opt.apply_gradients(zip(grads, variables)), jit_compile=jit_compile)
  for grads in AUTHOR_GRADS:
    apply([tf.constant(grads[k], tf.float32) for k in keys])
  for var, k in zip(variables, keys):
    np.testing.assert_allclose(var.numpy(), AUTHOR_RESULT[k], rtol=2e-5, atol=1e-7)
    expected = numpy_laprop(AUTHOR_INIT[k], [g[k] for g in AUTHOR_GRADS], 1e-2, warmup=2)
    np.testing.assert_allclose(AUTHOR_RESULT[k], expected, rtol=2e-5, atol=1e-7)  # the NumPy chain agrees


GRADS = [np.array(g, np.float32) for g in ([2e-5, -1e-3, 0.5], [-3e-5, 2e-3, 0.25], [1e-5, -5e-4, -1.0])]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_matches_numpy_on_one_variable(jit_compile):
  init = np.array([0.3, -0.2, 1.0], np.float32)  # norm 1.06: the 0.5 and -1.0 gradients are clipped
  var = tf.Variable(init)
  opt = LaProp(learning_rate=1e-2, warmup=2)
  apply = tf.function(lambda g: opt.apply_gradients([(g, var)]), jit_compile=jit_compile)
  for step, g in enumerate(GRADS, 1):
    apply(tf.constant(g))
    expected = numpy_laprop(init, GRADS[:step], 1e-2, warmup=2)
    np.testing.assert_allclose(var.numpy(), expected, rtol=1e-6, atol=1e-7)
  assert int(opt._count) == len(GRADS)
  # Without the clipping the result differs: the test would see a missing AGC.
  assert not np.allclose(var.numpy(), numpy_laprop(init, GRADS, 1e-2, agc=0.0, warmup=2), rtol=1e-4)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_one_optimizer_over_two_modules_matches_numpy(precision, jit_compile):
  """One LaProp over two Keras layers' variables (kernels clipped by AGC, zero biases by pmin) as NumPy."""
  keras.utils.set_random_seed(0)
  first = keras.layers.Dense(4, activation="silu", name="first")
  second = keras.layers.Dense(2, name="second")
  x = tf.constant(np.random.default_rng(0).normal(size=(8, 3)), tf.float32)
  second(first(x))
  variables = first.trainable_variables + second.trainable_variables
  assert {v.dtype for v in variables} == {tf.float32}  # mixed policies keep float32 variables
  assert first(x).dtype == (tf.bfloat16 if precision == "mixed_bfloat16" else tf.float32)
  init = [v.numpy() for v in variables]
  opt = LaProp(learning_rate=1e-2, warmup=3)
  opt.build(variables)

  @tf.function(jit_compile=jit_compile)
  def step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(tf.cast(second(first(x)), tf.float32) - 3.0))
    grads = tape.gradient(loss, variables)
    opt.apply_gradients(zip(grads, variables))
    return grads

  grads = [[g.numpy() for g in step(x * (1.0 + 0.1 * i))] for i in range(5)]
  assert int(opt._count) == 5
  clipped = 0
  for k, v in enumerate(variables):
    first_grad = grads[0][k]
    clipped += np.linalg.norm(first_grad) > 0.3 * max(1e-3, np.linalg.norm(init[k]))
    expected = numpy_laprop(init[k], [g[k] for g in grads], 1e-2, warmup=3)
    np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.abs(v.numpy() - init[k]).max() > 1e-3  # every variable moved by about lr per update
  assert clipped >= 2  # at least the zero biases are clipped: the AGC is exercised


def test_loss_scale_optimizer_skips_non_finite_gradients():
  var = tf.Variable([1.0, 2.0])
  opt = keras.mixed_precision.LossScaleOptimizer(LaProp(learning_rate=0.1, warmup=2))
  opt.apply_gradients([(tf.constant([np.inf, 1.0]), var)])
  np.testing.assert_array_equal(var.numpy(), [1.0, 2.0])
  assert int(opt.iterations) == 1 and int(opt.inner_optimizer._count) == 0
  grads = [[0.5, -0.25], [0.1, 0.3], [0.2, 0.2]]
  for g in grads:
    opt.apply_gradients([(tf.constant(g), var)])
  np.testing.assert_allclose(var.numpy(), numpy_laprop([1.0, 2.0], grads, 0.1, warmup=2), rtol=1e-6)


def test_checkpoint_holds_count_and_moments(tmp_path):
  grads = [[1.0, 2.0], [0.5, 1.0], [0.25, -1.0]]
  var = tf.Variable([0.5, -0.5])
  opt = LaProp(learning_rate=1e-2, warmup=2)
  for g in grads[:2]:
    opt.apply_gradients([(tf.constant(g), var)])
  path = tf.train.Checkpoint(var=var, opt=opt).save(str(tmp_path / "ckpt"))
  new_var = tf.Variable([0.0, 0.0])
  new = LaProp(learning_rate=1e-2, warmup=2)
  new.build([new_var])
  tf.train.Checkpoint(var=new_var, opt=new).restore(path).assert_consumed()
  assert int(new._count) == 2
  new.apply_gradients([(tf.constant(grads[2]), new_var)])
  np.testing.assert_allclose(new_var.numpy(), numpy_laprop([0.5, -0.5], grads, 1e-2, warmup=2), rtol=1e-6)


def test_get_config_round_trip():
  opt = LaProp(learning_rate=3e-5, agc=0.2, pmin=1e-2, epsilon=1e-12, warmup=50)
  clone = LaProp.from_config(opt.get_config())
  assert (clone.agc, clone.pmin, clone.beta_1, clone.beta_2) == (0.2, 1e-2, BETA_1, BETA_2)
  assert (clone.epsilon, clone.warmup) == (1e-12, 50)
  assert float(clone.learning_rate) == pytest.approx(3e-5)
  defaults = LaProp()
  assert (defaults.agc, defaults.pmin, defaults.epsilon, defaults.warmup) == (0.3, 1e-3, 1e-20, 1000)
  assert float(defaults.learning_rate) == pytest.approx(4e-5)
  with pytest.raises(ValueError, match="must not be negative"):
    LaProp(warmup=-1)
