"""Reconstructs a dict observation from model features."""

import tensorflow as tf

from dreamer_tf.agent import distributions
from dreamer_tf.agent.networks.image_decoder import ImageDecoder
from dreamer_tf.agent.networks.mlp import MLP
from dreamer_tf.agent.networks.multi_encoder import select_keys, stacked_image_shape
from dreamer_tf.agent.networks.norm_dense import kernel_initializer

keras = tf.keras


class MultiDecoder(keras.layers.Layer):
  """The world model's decoder: images by transposed CNN, vectors by MLP.

  Returns a dict of distributions: images are unit Gaussians over pixels in
  [0, 1] (:class:`~dreamer_tf.agent.distributions.MSE` summed over H, W, C),
  vectors are symlog-MSE (Eq. 8) from one uniform-initialised output layer per key.

  Args: as :class:`~dreamer_tf.agent.networks.multi_encoder.MultiEncoder`.
  """

  def __init__(self, shapes, cnn_keys, mlp_keys, cnn_depth, layers, units, minres=4, norm_eps=1e-3, **kwargs):
    super().__init__(**kwargs)
    self.shapes = {k: tuple(v) for k, v in shapes.items()}
    self.cnn_keys, self.mlp_keys = select_keys(self.shapes, cnn_keys, mlp_keys)
    self._config = dict(
      cnn_keys=cnn_keys,
      mlp_keys=mlp_keys,
      cnn_depth=cnn_depth,
      layers=layers,
      units=units,
      minres=minres,
      norm_eps=norm_eps,
    )
    self.cnn = None
    if self.cnn_keys:
      h, w, channels = stacked_image_shape(self.shapes, self.cnn_keys)
      self.cnn = ImageDecoder((h, w, channels), cnn_depth, minres, norm_eps, name="cnn")
    self.mlp = MLP(layers, units, norm_eps, name="mlp") if self.mlp_keys else None
    self.vector_out = {
      k: keras.layers.Dense(
        max(1, int(tf.reduce_prod(self.shapes[k]))),
        kernel_initializer=kernel_initializer(1.0, "uniform"),
        name=f"out_{k}",
      )
      for k in self.mlp_keys
    }

  def build(self, input_shape):
    if self.cnn:
      self.cnn.build(input_shape)
    if self.mlp:
      self.mlp.build(input_shape)
      for layer in self.vector_out.values():
        layer.build(tuple(input_shape[:-1]) + (self.mlp.units,))
    super().build(input_shape)

  def call(self, feat):
    dists = {}
    if self.cnn:
      image = self.cnn(feat)
      start = 0
      for k in self.cnn_keys:
        channels = self.shapes[k][-1]
        dists[k] = distributions.MSE(image[..., start : start + channels], 3)
        start += channels
    if self.mlp:
      x = self.mlp(feat)
      for k in self.mlp_keys:
        out = self.vector_out[k](x)
        if not self.shapes[k]:
          dists[k] = distributions.SymlogMSE(out[..., 0], 0)
        else:
          dists[k] = distributions.SymlogMSE(out, 1)
    return dists

  def get_config(self):
    config = super().get_config()
    config.update(shapes=self.shapes, **self._config)
    return config
