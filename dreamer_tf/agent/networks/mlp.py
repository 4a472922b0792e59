"""A stack of normalised dense layers: :class:`NormDense` (2023) or :class:`RMSNormDense` (current)."""

import tensorflow as tf

from dreamer_tf.agent import ops
from dreamer_tf.agent.networks.norm_dense import NormDense
from dreamer_tf.agent.networks.rms_norm_dense import RMSNormDense

keras = tf.keras

NORMS = ("layer", "rms")


class MLP(keras.layers.Layer):
  """``layers`` x [Dense, norm, SiLU] with ``units`` each; no output layer.

  ``norm`` chooses the generation's block, as the author's ``norm`` key does: ``'layer'``, the 2023
  :class:`NormDense` (no bias, LayerNorm); ``'rms'``, the current generation's :class:`RMSNormDense`
  (bias, RMSNorm, fan-in initialiser; ``embodied/jax/nets.py:MLP`` of arXiv 2301.04104v2).

  Args:
    layers: Number of hidden layers (the size preset's "MLP layers").
    units: Hidden units (the size preset's "dense hidden units").
    norm_eps: Norm epsilon (1e-3 for the 2023 LayerNorm, 1e-4 for RMSNorm).
    symlog_inputs: Squash inputs with symlog first (vector encoder, Sec. 2).
    norm: ``'layer'`` or ``'rms'``.
  """

  def __init__(self, layers, units, norm_eps=1e-3, symlog_inputs=False, norm="layer", **kwargs):
    super().__init__(**kwargs)
    if norm not in NORMS:
      raise ValueError(f"unknown MLP norm {norm!r}; choose one of {NORMS}")
    self.layers = layers
    self.units = units
    self.norm_eps = norm_eps
    self.symlog_inputs = symlog_inputs
    self.norm = norm
    if norm == "layer":
      self.hidden = [NormDense(units, "silu", True, norm_eps, name=f"h{i}") for i in range(layers)]
    else:
      self.hidden = [RMSNormDense(units, "silu", norm_eps, name=f"h{i}") for i in range(layers)]

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
    config.update(
      layers=self.layers,
      units=self.units,
      norm_eps=self.norm_eps,
      symlog_inputs=self.symlog_inputs,
      norm=self.norm,
    )
    return config
