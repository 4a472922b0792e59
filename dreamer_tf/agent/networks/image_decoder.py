"""The transposed-CNN image decoder of the 2023 version."""

import math

import tensorflow as tf

from dreamer_tf.agent.networks.norm_dense import kernel_initializer

keras = tf.keras


class ImageDecoder(keras.layers.Layer):
  """Maps model features to an image in [0, 1] (mean of a unit Gaussian).

  A dense layer projects the features to a ``minres x minres`` map with
  ``depth * 2**(stages-1)`` channels, then transposed convolutions (kernel 4,
  stride 2) with LayerNorm and SiLU halve the channels while doubling the
  resolution; the last one outputs ``channels`` without normalisation, and
  0.5 is added (the encoder subtracts it). As in the 2023 code, the input
  projection and the last convolution (plain layers, with bias) start
  uniform, the normalised convolutions truncated normal.

  Args:
    shape: The output image shape ``(H, W, C)``.
    depth: The CNN multiplier of the size preset.
    minres: The starting resolution.
    norm_eps: LayerNorm epsilon.
  """

  def __init__(self, shape, depth, minres=4, norm_eps=1e-3, **kwargs):
    super().__init__(**kwargs)
    self.shape = tuple(shape)
    self.depth = depth
    self.minres = minres
    self.norm_eps = norm_eps
    self.stages = int(math.log2(self.shape[1]) - math.log2(minres))
    self.start_depth = depth * 2 ** (self.stages - 1)
    self.project = keras.layers.Dense(
      minres * minres * self.start_depth, kernel_initializer=kernel_initializer(1.0, "uniform"), name="in"
    )
    self.convs, self.norms = [], []
    channels = self.start_depth
    for i in range(self.stages):
      last = i == self.stages - 1
      channels = self.shape[-1] if last else channels // 2
      init = kernel_initializer(1.0, "uniform" if last else "truncated_normal")
      self.convs.append(
        keras.layers.Conv2DTranspose(channels, 4, 2, "same", use_bias=last, kernel_initializer=init, name=f"conv{i}")
      )
      self.norms.append(None if last else keras.layers.LayerNormalization(epsilon=norm_eps, name=f"norm{i}"))

  def build(self, input_shape):
    self.project.build(input_shape)
    shape = (None, self.minres, self.minres, self.start_depth)
    for conv, norm in zip(self.convs, self.norms):
      conv.build(shape)
      shape = (None, shape[1] * 2, shape[2] * 2, conv.filters)
      if norm is not None:
        norm.build(shape)
    super().build(input_shape)

  def call(self, feat):
    batch_shape = tf.shape(feat)[:-1]
    x = self.project(feat)
    x = tf.reshape(x, [-1, self.minres, self.minres, self.start_depth])
    for conv, norm in zip(self.convs, self.norms):
      x = conv(x)
      if norm is not None:
        x = tf.nn.silu(norm(x))
    x = x[:, : self.shape[0], : self.shape[1]] + 0.5
    return tf.reshape(x, tf.concat([batch_shape, self.shape], 0))

  def get_config(self):
    config = super().get_config()
    config.update(shape=self.shape, depth=self.depth, minres=self.minres, norm_eps=self.norm_eps)
    return config
