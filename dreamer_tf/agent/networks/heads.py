"""Prediction heads: an MLP trunk followed by a distribution output layer."""

import tensorflow as tf

from dreamer_tf.agent import distributions, ops
from dreamer_tf.agent.networks.mlp import MLP
from dreamer_tf.agent.networks.norm_dense import NormDense
from dreamer_tf.agent.networks.truncated_normal_fan_in import TruncatedNormalFanIn

keras = tf.keras

OUTPUTS = ("twohot", "symexp_twohot", "binary", "onehot", "normal")


class Head(keras.layers.Layer):
  """MLP trunk plus an output layer that parameterises a distribution.

  Output kinds:
    * ``twohot``: ``bins`` logits over symlog-spaced bins (reward and critic,
      Eq. 10-11), zero-initialised with ``outscale=0`` so they predict 0.
    * ``symexp_twohot``: ``bins`` logits over the current generation's raw-space
      bins (:class:`~dreamer_tf.agent.distributions.SymexpTwoHot`).
    * ``binary``: one logit of a Bernoulli (continue predictor).
    * ``onehot``: ``size`` logits of a categorical with ``unimix`` (discrete actor).
    * ``normal``: ``size`` means and ``size`` std logits of a
      :class:`~dreamer_tf.agent.distributions.BoundedNormal` (continuous actor).

  Args:
    output: One of :data:`OUTPUTS`.
    size: Output dimension (actions) for ``onehot`` and ``normal``.
    layers, units, norm_eps: The trunk, see :class:`MLP`.
    outscale: Initialiser scale of the uniform output layers (0 = zeros).
    bins: Number of twohot bins.
    unimix: Uniform mixture of the ``onehot`` output.
    minstd, maxstd: Std range of the ``normal`` output.
    norm: ``'layer'``, the 2023 trunk (:class:`MLP` of NormDense) and uniform output layers
      without bias; ``'rms'``, the current generation's (arXiv 2301.04104v2,
      ``embodied/jax/heads.py:MLPHead``): an RMSNorm trunk and output layers with a bias and the
      :class:`TruncatedNormalFanIn` initialiser scaled by ``outscale``.
  """

  def __init__(
    self,
    output,
    layers,
    units,
    size=1,
    outscale=1.0,
    bins=255,
    unimix=0.0,
    minstd=0.1,
    maxstd=1.0,
    norm_eps=1e-3,
    norm="layer",
    **kwargs,
  ):
    super().__init__(**kwargs)
    if output not in OUTPUTS:
      raise ValueError(f"unknown head output {output!r}; choose one of {OUTPUTS}")
    self.output_kind = output
    self.layers, self.units, self.size = layers, units, size
    self.outscale, self.bins, self.unimix = outscale, bins, unimix
    self.minstd, self.maxstd, self.norm_eps, self.norm = minstd, maxstd, norm_eps, norm
    self.trunk = MLP(layers, units, norm_eps, norm=norm, name="mlp")
    out_size = {"twohot": bins, "symexp_twohot": bins, "binary": 1, "onehot": size, "normal": size}[output]
    if norm == "layer":
      # Output layers start uniform (the 2023 code's distribution outputs), hidden layers truncated normal.
      out_kw = dict(norm=False, scale=outscale, distribution="uniform")
      make_out = lambda units, name: NormDense(units, None, name=name, **out_kw)
    else:
      make_out = lambda units, name: keras.layers.Dense(
        units, kernel_initializer=TruncatedNormalFanIn(outscale), name=name
      )
    self.out = make_out(out_size, "out")
    self.std = make_out(size, "std") if output == "normal" else None
    self._bins = {"twohot": ops.symlog_bins, "symexp_twohot": ops.symexp_bins}.get(output, lambda n: None)(bins)

  def build(self, input_shape):
    self.trunk.build(input_shape)
    shape = tuple(input_shape[:-1]) + (self.units if self.layers else input_shape[-1],)
    self.out.build(shape)
    if self.std is not None:
      self.std.build(shape)
    super().build(input_shape)

  def call(self, feat):
    x = self.trunk(feat)
    out = self.out(x)
    if self.output_kind in ("twohot", "symexp_twohot"):
      return self.twohot(out)
    if self.output_kind == "binary":
      return distributions.Bernoulli(out[..., 0])
    if self.output_kind == "onehot":
      return distributions.OneHotCategorical(out, self.unimix)
    return distributions.BoundedNormal(out, self.std(x), self.minstd, self.maxstd)

  def twohot(self, logits):
    """The distribution of a twohot head's ``logits`` (computed elsewhere, e.g. under another tape)."""
    if self.output_kind == "twohot":
      return distributions.TwoHotSymlog(logits, self._bins)
    return distributions.SymexpTwoHot(logits, self._bins)

  def get_config(self):
    config = super().get_config()
    config.update(
      output=self.output_kind,
      layers=self.layers,
      units=self.units,
      size=self.size,
      outscale=self.outscale,
      bins=self.bins,
      unimix=self.unimix,
      minstd=self.minstd,
      maxstd=self.maxstd,
      norm_eps=self.norm_eps,
      norm=self.norm,
    )
    return config
