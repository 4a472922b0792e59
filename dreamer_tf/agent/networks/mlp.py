"""A stack of :class:`NormDense` layers."""

import tensorflow as tf

from dreamer_tf.agent import ops
from dreamer_tf.agent.networks.norm_dense import NormDense

keras = tf.keras


class MLP(keras.layers.Layer):
  """``layers`` x [Dense, LayerNorm, SiLU] with ``units`` each; no output layer.

  Args:
    layers: Number of hidden layers (the size preset's "MLP layers").
    units: Hidden units (the size preset's "dense hidden units").
    norm_eps: LayerNorm epsilon.
    symlog_inputs: Squash inputs with symlog first (vector encoder, Sec. 2).
  """

  def __init__(self, layers, units, norm_eps=1e-3, symlog_inputs=False, **kwargs):
    super().__init__(**kwargs)
    self.layers = layers
    self.units = units
    self.norm_eps = norm_eps
    self.symlog_inputs = symlog_inputs
    self.hidden = [NormDense(units, "silu", True, norm_eps, name=f"h{i}") for i in range(layers)]

  def build(self, input_shape):
    shape = tuple(input_shape)
    for layer in self.hidden:
      layer.build(shape)
      shape = shape[:-1] + (self.units,)
    super().build(input_shape)

  def call(self, x):
    if self.symlog_inputs:
      x = ops.symlog(x)
    for layer in self.hidden:
      x = layer(x)
    return x

  def get_config(self):
    config = super().get_config()
    config.update(layers=self.layers, units=self.units, norm_eps=self.norm_eps, symlog_inputs=self.symlog_inputs)
    return config
