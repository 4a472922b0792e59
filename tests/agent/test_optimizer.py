"""Adam in the 2023 code's form against a NumPy Adam, under every precision and with XLA."""

import numpy as np
import pytest
import tensorflow as tf

from dreamer_tf.agent.dreamer_agent import make_optimizer
from dreamer_tf.agent.optimizer import Adam
from dreamer_tf.config import Config

keras = tf.keras

BETA_1, BETA_2 = 0.9, 0.999


def numpy_adam(param, grads, lr, eps):
  """optax.scale_by_adam + scale(-lr): eps added to sqrt(v_hat), after the bias correction."""
  param = np.array(param, np.float64)
  m, v = np.zeros_like(param), np.zeros_like(param)
  for t, g in enumerate(grads, 1):
    g = np.asarray(g, np.float64)
    m = BETA_1 * m + (1 - BETA_1) * g
    v = BETA_2 * v + (1 - BETA_2) * g * g
    m_hat, v_hat = m / (1 - BETA_1**t), v / (1 - BETA_2**t)
    param = param - lr * m_hat / (np.sqrt(v_hat) + eps)
  return param


GRADS = [np.array(g, np.float32) for g in ([2e-5, -1e-3, 0.5], [-3e-5, 2e-3, 0.25], [1e-5, -5e-4, -1.0])]


def test_first_update_by_hand():
  # Step 1: m_hat = g and v_hat = g^2, so the update is lr * g / (|g| + eps). With g = eps = 1e-5
  # that is lr / 2; Keras' Adam (eps before the bias correction, 31.6x larger) moves lr / 32.6.
  var = tf.Variable([1.0])
  opt = Adam(learning_rate=0.1, epsilon=1e-5)
  opt.apply_gradients([(tf.constant([1e-5]), var)])
  np.testing.assert_allclose(var.numpy(), [1.0 - 0.05], rtol=1e-6)
  keras_var = tf.Variable([1.0])
  keras.optimizers.Adam(learning_rate=0.1, epsilon=1e-5).apply_gradients([(tf.constant([1e-5]), keras_var)])
  np.testing.assert_allclose(1.0 - keras_var.numpy(), [0.1 / (1 + np.sqrt(1000.0))], rtol=1e-4)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_matches_numpy_adam(jit_compile):
  init = np.array([0.3, -0.2, 1.0], np.float32)
  var = tf.Variable(init)
  opt = Adam(learning_rate=1e-2, epsilon=1e-5)
  apply = tf.function(lambda g: opt.apply_gradients([(g, var)]), jit_compile=jit_compile)
  for step, g in enumerate(GRADS, 1):
    apply(tf.constant(g))
    np.testing.assert_allclose(var.numpy(), numpy_adam(init, GRADS[:step], 1e-2, 1e-5), rtol=1e-5, atol=1e-7)
  assert int(opt.iterations) == len(GRADS)


@pytest.mark.parametrize("precision", ["float32", "mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_agent_optimizer_under_every_precision(precision, jit_compile):
  """make_optimizer's Adam (in a LossScaleOptimizer under mixed_float16) moves a Dense layer as NumPy's Adam."""
  opt = make_optimizer(Config({"lr": 1e-3, "eps": 1e-5}), mixed_float16=precision == "mixed_float16")
  loss_scale = isinstance(opt, keras.mixed_precision.LossScaleOptimizer)
  assert loss_scale == (precision == "mixed_float16")
  assert isinstance(opt.inner_optimizer if loss_scale else opt, Adam)
  layer = keras.layers.Dense(2, kernel_initializer="glorot_uniform")
  x = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
  layer(x)
  assert layer.kernel.dtype == tf.float32  # Mixed policies keep float32 variables.
  init = [v.numpy() for v in layer.trainable_variables]
  opt.build(layer.trainable_variables)

  @tf.function(jit_compile=jit_compile)
  def step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.square(tf.cast(layer(x), tf.float32) - 1.0))
      scaled = opt.get_scaled_loss(loss) if loss_scale else loss
    grads = tape.gradient(scaled, layer.trainable_variables)
    if loss_scale:
      grads = opt.get_unscaled_gradients(grads)
    opt.apply_gradients(zip(grads, layer.trainable_variables), skip_gradients_aggregation=True)
    return grads

  applied = []  # The LossScaleOptimizer skips steps whose scaled gradients overflowed float16.
  for i in range(6):
    grads = [g.numpy() for g in step(x * (1.0 + 0.1 * i))]
    if all(np.isfinite(g).all() for g in grads):
      applied.append(grads)
  assert len(applied) >= 3 and int(opt.inner_optimizer._count if loss_scale else opt._count) == len(applied)
  for k, v in enumerate(layer.trainable_variables):
    expected = numpy_adam(init[k], [grads[k] for grads in applied], 1e-3, 1e-5)
    np.testing.assert_allclose(v.numpy(), expected, rtol=1e-5, atol=1e-6)
  # The updates are of order lr: a forgotten update or a Keras-form epsilon would be caught.
  assert all(np.abs(v.numpy() - i).max() > 1e-3 for v, i in zip(layer.trainable_variables, init))


def test_loss_scale_optimizer_skips_non_finite_gradients():
  var = tf.Variable([1.0, 2.0])
  opt = keras.mixed_precision.LossScaleOptimizer(Adam(learning_rate=0.1, epsilon=1e-5))
  opt.apply_gradients([(tf.constant([np.inf, 1.0]), var)])
  np.testing.assert_array_equal(var.numpy(), [1.0, 2.0])
  assert float(opt.loss_scale) == 2.0**14
  assert int(opt.iterations) == 1  # Keras counts the skipped step; the bias correction must not.
  for g in ([0.5, -0.25], [0.1, 0.3]):
    opt.apply_gradients([(tf.constant(g), var)])
  np.testing.assert_allclose(var.numpy(), numpy_adam([1.0, 2.0], [[0.5, -0.25], [0.1, 0.3]], 0.1, 1e-5), rtol=1e-6)


def test_checkpoint_holds_the_count(tmp_path):
  var = tf.Variable([0.5, -0.5])
  opt = keras.mixed_precision.LossScaleOptimizer(Adam(learning_rate=1e-3, epsilon=1e-5))
  for g in ([np.nan, 1.0], [1.0, 2.0], [0.5, 1.0]):
    opt.apply_gradients([(tf.constant(g), var)])
  path = tf.train.Checkpoint(var=var, opt=opt).save(str(tmp_path / "ckpt"))
  new_var = tf.Variable([0.0, 0.0])
  new = keras.mixed_precision.LossScaleOptimizer(Adam(learning_rate=1e-3, epsilon=1e-5))
  new.build([new_var])
  tf.train.Checkpoint(var=new_var, opt=new).restore(path).assert_consumed()
  assert int(new.inner_optimizer._count) == 2 and int(new.iterations) == 3
  for g in ([0.25, -1.0],):
    new.apply_gradients([(tf.constant(g), new_var)])
  expected = numpy_adam([0.5, -0.5], [[1.0, 2.0], [0.5, 1.0], [0.25, -1.0]], 1e-3, 1e-5)
  np.testing.assert_allclose(new_var.numpy(), expected, rtol=1e-6)


def test_get_config_round_trip():
  opt = Adam(learning_rate=3e-5, epsilon=1e-5)
  clone = Adam.from_config(opt.get_config())
  assert (clone.beta_1, clone.beta_2, clone.epsilon) == (BETA_1, BETA_2, 1e-5)
  assert float(clone.learning_rate) == pytest.approx(3e-5)
