"""A dense layer with bias, then RMSNorm and an activation: the current generation's building block."""

import tensorflow as tf

from dreamer_tf.agent.networks.rms_norm import RMSNorm
from dreamer_tf.agent.networks.truncated_normal_fan_in import TruncatedNormalFanIn

keras = tf.keras


class RMSNormDense(keras.layers.Layer):
  """``act(RMSNorm(x @ W + b))``: ``Linear`` -> ``Norm('rms')`` -> SiLU of the author's current code.

  Unlike the 2023 :class:`~dreamer_tf.agent.networks.norm_dense.NormDense` (no bias before its
  LayerNorm, fan-average initialiser), every layer of the current generation (arXiv 2301.04104v2,
  ``embodied/jax/nets.py:Linear``, ``Norm``, ``MLP``) has a bias (zeros at first) and a
  :class:`TruncatedNormalFanIn` kernel. Inputs of any rank ``[..., in]``.

  Args:
    units: Output size.
    activation: Keras activation name (``'silu'``).
    norm_eps: RMSNorm epsilon (1e-4).
  """

  def __init__(self, units, activation="silu", norm_eps=1e-4, **kwargs):
    super().__init__(**kwargs)
    self.units = units
    self.activation = activation
    self.norm_eps = norm_eps
    self.dense = keras.layers.Dense(units, kernel_initializer=TruncatedNormalFanIn(), name="linear")
    self.norm = RMSNorm(norm_eps, name="norm")
    self.act = keras.activations.get(activation)

  def build(self, input_shape):
    self.dense.build((None, input_shape[-1]))
    self.norm.build((None, self.units))
    super().build(input_shape)

  def call(self, x):
    return self.act(self.norm(self.dense(x)))

  def project(self, x, start=0, stop=None):
    """``x @ W[start:stop]`` without bias: part of the matmul of a concatenated input.

    ``finish(project(a, 0, n) + project(b, n))`` equals ``self(concat([a, b]))``, so the part of an
    input that does not change inside a loop is computed once, outside it (as
    :meth:`~dreamer_tf.agent.networks.norm_dense.NormDense.project`).
    """
    kernel = tf.cast(self.dense.kernel[start:stop], self.compute_dtype)
    return tf.matmul(tf.cast(x, self.compute_dtype), kernel)

  def finish(self, pre_activation):
    """Bias, RMSNorm and the activation of a summed :meth:`project` result."""
    return self.act(self.norm(tf.nn.bias_add(pre_activation, tf.cast(self.dense.bias, self.compute_dtype))))

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, activation=self.activation, norm_eps=self.norm_eps)
    return config
