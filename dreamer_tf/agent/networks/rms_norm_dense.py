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

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, activation=self.activation, norm_eps=self.norm_eps)
    return config
