"""Reconstructs a dict observation from model features."""

import tensorflow as tf

from dreamer_tf.agent import distributions
from dreamer_tf.agent.networks.image_decoder import ImageDecoder
from dreamer_tf.agent.networks.mlp import MLP
from dreamer_tf.agent.networks.multi_encoder import CNNS, select_keys, stacked_image_shape
from dreamer_tf.agent.networks.norm_dense import kernel_initializer
from dreamer_tf.agent.networks.truncated_normal_fan_in import TruncatedNormalFanIn
from dreamer_tf.agent.networks.upsampling_image_decoder import UpsamplingImageDecoder

keras = tf.keras


class MultiDecoder(keras.layers.Layer):
  """The world model's decoder: images by transposed CNN, vectors by MLP.

  Returns a dict of distributions: images are unit Gaussians over pixels in
  [0, 1] (:class:`~dreamer_tf.agent.distributions.MSE` summed over H, W, C),
  vectors are symlog-MSE (Eq. 8) from one output layer per key, discrete vectors (listed in
  ``classes``) categoricals over their classes.

  ``cnn='strided'`` (2023): an :class:`ImageDecoder` of the features, output layers uniform without
  bias. ``cnn='pooling'`` (the current generation, arXiv 2301.04104v2 ``dreamerv3/rssm.py:Decoder``):
  an :class:`UpsamplingImageDecoder` of ``deter`` (the first ``deter_size`` features) and the flat
  ``stoch`` (the rest); with ``norm='rms'`` the vector output layers have a bias and the
  :class:`TruncatedNormalFanIn` initialiser.

  Args: as :class:`~dreamer_tf.agent.networks.multi_encoder.MultiEncoder`, and
    deter_size: Size of ``deter`` at the start of the features (``cnn='pooling'``).
    bspace: Blocks of the upsampling decoder's spatial projection.
  """

  def __init__(
    self,
    shapes,
    cnn_keys,
    mlp_keys,
    cnn_depth,
    layers,
    units,
    minres=4,
    norm_eps=1e-3,
    norm="layer",
    cnn="strided",
    classes=None,
    deter_size=0,
    bspace=8,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if cnn not in CNNS:
      raise ValueError(f"unknown cnn {cnn!r}; choose one of {CNNS}")
    self.shapes = {k: tuple(v) for k, v in shapes.items()}
    self.cnn_keys, self.mlp_keys = select_keys(self.shapes, cnn_keys, mlp_keys)
    self.classes = {k: int(v) for k, v in (classes or {}).items() if k in self.mlp_keys}
    self.deter_size = deter_size
    self._config = dict(
      cnn_keys=cnn_keys,
      mlp_keys=mlp_keys,
      cnn_depth=cnn_depth,
      layers=layers,
      units=units,
      minres=minres,
      norm_eps=norm_eps,
      norm=norm,
      cnn=cnn,
      classes=self.classes,
      deter_size=deter_size,
      bspace=bspace,
    )
    self.cnn = None
    if self.cnn_keys:
      image_shape = stacked_image_shape(self.shapes, self.cnn_keys)
      if cnn == "strided":
        self.cnn = ImageDecoder(image_shape, cnn_depth, minres, norm_eps, name="cnn")
      else:
        self.cnn = UpsamplingImageDecoder(image_shape, cnn_depth, units, bspace=bspace, norm_eps=norm_eps, name="cnn")
    self.mlp = MLP(layers, units, norm_eps, norm=norm, name="mlp") if self.mlp_keys else None
    init = (lambda: kernel_initializer(1.0, "uniform")) if norm == "layer" else TruncatedNormalFanIn
    self.vector_out = {
      k: keras.layers.Dense(
        max(1, int(tf.reduce_prod(self.shapes[k]))) * self.classes.get(k, 1), kernel_initializer=init(), name=f"out_{k}"
      )
      for k in self.mlp_keys
    }

  def build(self, input_shape):
    if isinstance(self.cnn, UpsamplingImageDecoder):
      self.cnn.build_for(self.deter_size, int(input_shape[-1]) - self.deter_size)
    elif self.cnn:
      self.cnn.build(input_shape)
    if self.mlp:
      self.mlp.build(input_shape)
      for layer in self.vector_out.values():
        layer.build(tuple(input_shape[:-1]) + (self.mlp.units,))
    super().build(input_shape)

  def call(self, feat):
    dists = {}
    if self.cnn:
      if isinstance(self.cnn, UpsamplingImageDecoder):
        image = self.cnn({"deter": feat[..., : self.deter_size], "stoch": feat[..., self.deter_size :]})
      else:
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
        if k in self.classes:
          shape = tf.concat([tf.shape(out)[:-1], self.shapes[k], [self.classes[k]]], 0)
          dists[k] = distributions.Categorical(tf.reshape(out, shape), event_dims=len(self.shapes[k]))
        elif not self.shapes[k]:
          dists[k] = distributions.SymlogMSE(out[..., 0], 0)
        else:
          dists[k] = distributions.SymlogMSE(out, 1)
    return dists

  def get_config(self):
    config = super().get_config()
    config.update(shapes=self.shapes, **self._config)
    return config
