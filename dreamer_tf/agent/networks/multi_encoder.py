"""Encodes a dict observation into one embedding (CNN for images, MLP for vectors)."""

import re

import tensorflow as tf

from dreamer_tf.agent import ops
from dreamer_tf.agent.networks.image_encoder import ImageEncoder
from dreamer_tf.agent.networks.mlp import MLP
from dreamer_tf.agent.networks.pooling_image_encoder import PoolingImageEncoder

keras = tf.keras


def select_keys(shapes: dict, cnn_keys: str, mlp_keys: str):
  """Splits observation keys into image keys (rank 3) and vector keys (rank 0/1).

  ``log_`` keys are never modelled. Returns two sorted lists of keys.
  """
  shapes = {k: tuple(v) for k, v in shapes.items() if not k.startswith("log_")}
  cnn = sorted(k for k, s in shapes.items() if len(s) == 3 and re.match(cnn_keys, k))
  mlp = sorted(k for k, s in shapes.items() if len(s) in (0, 1) and re.match(mlp_keys, k))
  return cnn, mlp


def stacked_image_shape(shapes: dict, cnn_keys) -> tuple:
  """``(H, W, C)`` of the image keys concatenated along channels (the CNN's input and output)."""
  h, w = shapes[cnn_keys[0]][:2]
  return (h, w, sum(shapes[k][-1] for k in cnn_keys))


CNNS = ("strided", "pooling")


def vector_width(shapes: dict, keys, classes: dict) -> int:
  """Width of the concatenated vector keys; a discrete key (in ``classes``) counts as one-hot."""
  width = 0
  for k in keys:
    size = int(tf.reduce_prod(shapes[k])) if shapes[k] else 1
    width += size * classes.get(k, 1)
  return width


class MultiEncoder(keras.layers.Layer):
  """The world model's encoder over a dict of observations.

  Image keys (selected by the ``cnn_keys`` regex) are concatenated along the
  channel axis and encoded by an :class:`ImageEncoder` (``cnn='strided'``, 2023) or a
  :class:`PoolingImageEncoder` (``cnn='pooling'``, the current generation); vector keys
  (``mlp_keys``) are squashed with symlog, or one-hot encoded when they are discrete (listed in
  ``classes``, the current generation's ``embodied/jax/nets.py:DictConcat``), concatenated and
  encoded by an :class:`MLP`. The output is the concatenation of both.

  Args:
    shapes: Observation shapes, ``{key: shape}`` without batch dimensions.
    cnn_keys: Regex of keys for the CNN.
    mlp_keys: Regex of keys for the MLP.
    cnn_depth, minres: See :class:`ImageEncoder`.
    layers, units: The vector MLP, see :class:`MLP` (the world model passes
      ``model.vector_layers/vector_units``: 5 x 1024 in every size of the 2023 code).
    symlog_inputs: Squash vector inputs with symlog.
    norm_eps: Norm epsilon.
    norm: ``'layer'`` or ``'rms'``: the vector MLP's norm (see :class:`MLP`).
    cnn: One of :data:`CNNS`.
    classes: ``{key: number of classes}`` of discrete vector keys (one-hot encoded); values are
      class indices ``0 .. classes - 1``.
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
    symlog_inputs=True,
    norm_eps=1e-3,
    norm="layer",
    cnn="strided",
    classes=None,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if cnn not in CNNS:
      raise ValueError(f"unknown cnn {cnn!r}; choose one of {CNNS}")
    self.shapes = {k: tuple(v) for k, v in shapes.items()}
    self.cnn_keys, self.mlp_keys = select_keys(self.shapes, cnn_keys, mlp_keys)
    self.classes = {k: int(v) for k, v in (classes or {}).items() if k in self.mlp_keys}
    if not self.cnn_keys and not self.mlp_keys:
      raise ValueError(
        f"no observation key matches cnn_keys={cnn_keys!r} or mlp_keys={mlp_keys!r}: {sorted(self.shapes)}"
      )
    self._config = dict(
      cnn_keys=cnn_keys,
      mlp_keys=mlp_keys,
      cnn_depth=cnn_depth,
      layers=layers,
      units=units,
      minres=minres,
      symlog_inputs=symlog_inputs,
      norm_eps=norm_eps,
      norm=norm,
      cnn=cnn,
      classes=self.classes,
    )
    self.symlog_inputs = symlog_inputs
    self.cnn = None
    if self.cnn_keys and cnn == "strided":
      self.cnn = ImageEncoder(cnn_depth, minres, norm_eps, name="cnn")
    elif self.cnn_keys:
      self.cnn = PoolingImageEncoder(cnn_depth, norm_eps=norm_eps, name="cnn")
    self.mlp = MLP(layers, units, norm_eps, norm=norm, name="mlp") if self.mlp_keys else None
    self.output_size = 0
    if self.cnn:
      h, w, channels = stacked_image_shape(self.shapes, self.cnn_keys)
      self.cnn.build((None, h, w, channels))
      self.output_size += self.cnn.output_size
    if self.mlp:
      self.mlp.build((None, self.vector_size))
      self.output_size += units
    self.built = True

  @property
  def vector_size(self):
    return vector_width(self.shapes, self.mlp_keys, self.classes)

  def call(self, obs):
    outputs = []
    if self.cnn:
      image = tf.concat([tf.cast(obs[k], self.compute_dtype) for k in self.cnn_keys], -1)
      outputs.append(self.cnn(image))
    if self.mlp:
      vectors = []
      for k in self.mlp_keys:
        if k in self.classes:
          x = tf.one_hot(tf.cast(obs[k], tf.int32), self.classes[k])
          x = tf.reshape(x, tf.concat([tf.shape(x)[: x.shape.rank - len(self.shapes[k]) - 1], [-1]], 0))
        else:
          x = tf.cast(obs[k], tf.float32)
          x = x[..., None] if not self.shapes[k] else x
          x = ops.symlog(x) if self.symlog_inputs else x
        vectors.append(x)
      outputs.append(self.mlp(tf.concat(vectors, -1)))
    return tf.concat(outputs, -1) if len(outputs) > 1 else outputs[0]

  def get_config(self):
    config = super().get_config()
    config.update(shapes=self.shapes, **self._config)
    return config
