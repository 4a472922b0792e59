"""The block-diagonal GRU step of the current generation's RSSM (the sequence model of Eq. 3)."""

import tensorflow as tf

from dreamer_tf.agent.networks.block_linear import BlockLinear
from dreamer_tf.agent.networks.rms_norm import RMSNorm
from dreamer_tf.agent.networks.rms_norm_dense import RMSNormDense

keras = tf.keras

# Added to the update gate's logit so that the state starts mostly kept: sigmoid(0 - 1) = 0.27.
UPDATE_BIAS = -1.0


class BlockGRU(keras.layers.Layer):
  """One step ``h_t = f(h_{t-1}, z_{t-1}, a_{t-1})`` with a GRU split into ``blocks`` groups.

  The author's current code (arXiv 2301.04104v2, ``dreamerv3/rssm.py:RSSM._core``):

  1. Actions are scaled to at most magnitude 1 (``a / stop_gradient(max(1, |a|))``).
  2. ``deter``, the flat ``stoch`` and the action each pass through their own
     Dense(``hidden``) + RMSNorm + SiLU (``dynin0..2``); the three results (``3 * hidden``) are
     given to every block.
  3. Block ``k``'s input is ``[deter slice k, those 3 * hidden features]``;
     ``layers`` x [:class:`BlockLinear` (``deter``) + RMSNorm + SiLU] (``dynhid*``) then a
     :class:`BlockLinear` to ``3 * deter`` (``dyngru``), so each block computes its own gates from
     its own slice of the state.
  4. Each block's ``3 * deter / blocks`` outputs split into reset, candidate and update:
     ``cand = tanh(sigmoid(reset) * cand)``, ``update = sigmoid(update - 1)``,
     ``h_t = update * cand + (1 - update) * h_{t-1}``.

  Unlike the 2023 GRU there is no LayerNorm on the gates and the state starts at zeros (the RSSM's
  business). Inputs are cast to the compute dtype; the result is in the compute dtype.

  Args:
    deter: Size of the deterministic state, divisible by ``blocks``.
    hidden: Width of the input layers (the size preset's ``rssm.hidden``).
    blocks: Number of blocks (8).
    layers: Hidden block layers (the author's ``dynlayers``, 1).
    norm_eps: RMSNorm epsilon.
  """

  def __init__(self, deter, hidden, blocks=8, layers=1, norm_eps=1e-4, **kwargs):
    super().__init__(**kwargs)
    if deter % blocks:
      raise ValueError(f"deter ({deter}) must be a multiple of blocks ({blocks})")
    self.deter, self.hidden, self.blocks, self.layers, self.norm_eps = deter, hidden, blocks, layers, norm_eps
    self.inputs_in = [RMSNormDense(hidden, "silu", norm_eps, name=f"dynin{i}") for i in range(3)]
    self.hidden_layers = [BlockLinear(deter, blocks, name=f"dynhid{i}") for i in range(layers)]
    self.hidden_norms = [RMSNorm(norm_eps, name=f"dynhid{i}norm") for i in range(layers)]
    self.gates = BlockLinear(3 * deter, blocks, name="dyngru")

  def build_for(self, stoch_size: int, action_size: int):
    """Creates all variables for a flat stochastic state of ``stoch_size`` and ``action_size`` actions."""
    for layer, size in zip(self.inputs_in, (self.deter, stoch_size, action_size)):
      layer.build((None, size))
    width = self.deter + self.blocks * 3 * self.hidden
    for layer, norm in zip(self.hidden_layers, self.hidden_norms):
      layer.build((None, width))
      norm.build((None, self.deter))
      width = self.deter
    self.gates.build((None, width))
    self.built = True

  def call(self, deter, stoch, action):
    """The next ``deter`` from ``deter [N, deter]``, ``stoch [N, ...]`` and ``action [N, A]``."""
    dtype = self.compute_dtype
    deter = tf.cast(deter, dtype)
    stoch = tf.reshape(tf.cast(stoch, dtype), [tf.shape(deter)[0], -1])
    action = tf.cast(action, dtype)
    action = action / tf.stop_gradient(tf.maximum(tf.cast(1.0, dtype), tf.abs(action)))
    shared = tf.concat([layer(x) for layer, x in zip(self.inputs_in, (deter, stoch, action))], -1)
    # Every block gets the shared features: a broadcast product, whose gradient (unlike tf.repeat's
    # Tile) XLA compiles inside the tf.scan of a differentiated observe.
    shared = shared[:, None, :] * tf.ones([1, self.blocks, 1], dtype)
    x = tf.concat([self._to_blocks(deter), shared], -1)
    x = tf.reshape(x, [-1, self.blocks * x.shape[-1]])
    for layer, norm in zip(self.hidden_layers, self.hidden_norms):
      x = tf.nn.silu(norm(layer(x)))
    reset, cand, update = tf.split(self._to_blocks(self.gates(x)), 3, -1)
    reset, cand, update = (tf.reshape(g, [-1, self.deter]) for g in (reset, cand, update))
    cand = tf.tanh(tf.sigmoid(reset) * cand)
    update = tf.sigmoid(update + UPDATE_BIAS)
    return update * cand + (1 - update) * deter

  def _to_blocks(self, x):
    """``[N, blocks * k] -> [N, blocks, k]``."""
    return tf.reshape(x, [-1, self.blocks, x.shape[-1] // self.blocks])

  def get_config(self):
    config = super().get_config()
    config.update(deter=self.deter, hidden=self.hidden, blocks=self.blocks, layers=self.layers, norm_eps=self.norm_eps)
    return config
