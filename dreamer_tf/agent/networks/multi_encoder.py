"""Encodes a dict observation into one embedding (CNN for images, MLP for vectors)."""

import re

import tensorflow as tf

from dreamer_tf.agent.networks.image_encoder import ImageEncoder
from dreamer_tf.agent.networks.mlp import MLP

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


class MultiEncoder(keras.layers.Layer):
  """The world model's encoder over a dict of observations.

  Image keys (selected by the ``cnn_keys`` regex) are concatenated along the
  channel axis and encoded by an :class:`ImageEncoder`; vector keys (``mlp_keys``)
  are concatenated, squashed with symlog and encoded by an :class:`MLP`. The
  output is the concatenation of both.

  Args:
    shapes: Observation shapes, ``{key: shape}`` without batch dimensions.
    cnn_keys: Regex of keys for the CNN.
    mlp_keys: Regex of keys for the MLP.
    cnn_depth, minres: See :class:`ImageEncoder`.
    layers, units: The vector MLP, see :class:`MLP` (the world model passes
      ``model.vector_layers/vector_units``: 5 x 1024 in every size of the 2023 code).
    symlog_inputs: Squash vector inputs with symlog.
    norm_eps: LayerNorm epsilon.
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
    **kwargs,
  ):
    super().__init__(**kwargs)
    self.shapes = {k: tuple(v) for k, v in shapes.items()}
    self.cnn_keys, self.mlp_keys = select_keys(self.shapes, cnn_keys, mlp_keys)
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
    )
    self.cnn = ImageEncoder(cnn_depth, minres, norm_eps, name="cnn") if self.cnn_keys else None
    self.mlp = MLP(layers, units, norm_eps, symlog_inputs, name="mlp") if self.mlp_keys else None
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
    return sum(int(tf.reduce_prod(self.shapes[k])) if self.shapes[k] else 1 for k in self.mlp_keys)

  def call(self, obs):
    outputs = []
    if self.cnn:
      image = tf.concat([tf.cast(obs[k], self.compute_dtype) for k in self.cnn_keys], -1)
      outputs.append(self.cnn(image))
    if self.mlp:
      vectors = []
      for k in self.mlp_keys:
        x = tf.cast(obs[k], tf.float32)
        vectors.append(x[..., None] if not self.shapes[k] else x)
      outputs.append(self.mlp(tf.concat(vectors, -1)))
    return tf.concat(outputs, -1) if len(outputs) > 1 else outputs[0]

  def get_config(self):
    config = super().get_config()
    config.update(shapes=self.shapes, **self._config)
    return config
