"""The Recurrent State-Space Model of the current generation: block GRU, RMSNorm, zero initial state."""

import tensorflow as tf

from dreamer_tf.agent.networks.block_gru import BlockGRU
from dreamer_tf.agent.networks.rms_norm_dense import RMSNormDense
from dreamer_tf.agent.networks.rssm import RSSM
from dreamer_tf.agent.networks.truncated_normal_fan_in import TruncatedNormalFanIn

keras = tf.keras


class BlockRSSM(RSSM):
  """The RSSM of the author's current code (arXiv 2301.04104v2, ``dreamerv3/rssm.py:RSSM``).

  Chosen by ``model.core: blockgru`` (the 2023 :class:`RSSM` is ``model.core: gru``). It keeps the
  2023 layer's state dict (``deter``, ``stoch``, ``logits``), its ``tf.scan`` filtering
  (:meth:`observe`) and imagination (:meth:`imagine`), its unimix categorical latents with
  straight-through samples (the author's ``outs.OneHot`` with ``unimix``) and its features
  ``concat(deter, flat stoch)``, and replaces the layers (Eq. 3):

  * sequence model: the :class:`BlockGRU` step (``dynin*``, ``dynhid*``, ``dyngru``), which scales
    the action to magnitude at most 1 itself;
  * dynamics predictor ``p(z_t | h_t)``: ``prior_layers`` (2) x :class:`RMSNormDense` (``hidden``)
    on ``deter``, then a dense layer to the logits (``priorlogit``);
  * posterior ``q(z_t | h_t, x_t)``: ``post_layers`` (1) x :class:`RMSNormDense` (``hidden``), the
    first on ``[deter, embed]``, then a dense layer to the logits (``obslogit``).

  Every layer has a bias and the :class:`TruncatedNormalFanIn` initialiser. There is no learned
  initial state: on ``is_first`` the state and the previous action are zeros (the author's
  ``nn.mask(..., ~reset)``).

  Args:
    deter: Size of the deterministic state (``rssm.deter``), divisible by ``blocks``.
    hidden: Width of the hidden layers (``rssm.hidden``).
    stoch: Number of categorical latents (32).
    classes: Classes per latent.
    unimix: Uniform mixture of the latents (0.01).
    blocks: Blocks of the GRU (8).
    prior_layers: Hidden layers of the prior (the author's ``imglayers``, 2).
    post_layers: Hidden layers of the posterior (``obslayers``, 1).
    dyn_layers: Hidden block layers of the GRU (``dynlayers``, 1).
    norm_eps: RMSNorm epsilon (1e-4).
  """

  def __init__(
    self,
    deter,
    hidden,
    stoch=32,
    classes=32,
    unimix=0.01,
    blocks=8,
    prior_layers=2,
    post_layers=1,
    dyn_layers=1,
    norm_eps=1e-4,
    **kwargs,
  ):
    if post_layers < 1:
      raise ValueError(f"post_layers must be at least 1, got {post_layers}")
    self.blocks, self.prior_layers, self.post_layers, self.dyn_layers = blocks, prior_layers, post_layers, dyn_layers
    super().__init__(deter, hidden, stoch, classes, unimix, "zeros", 1.0, norm_eps, **kwargs)

  def _create_layers(self):
    hidden, flat = self.units, self.stoch * self.classes
    self.core = BlockGRU(self.deter, hidden, self.blocks, self.dyn_layers, self.norm_eps, name="core")
    self.prior = [RMSNormDense(hidden, "silu", self.norm_eps, name=f"prior{i}") for i in range(self.prior_layers)]
    self.prior_logit = keras.layers.Dense(flat, kernel_initializer=TruncatedNormalFanIn(), name="priorlogit")
    self.post = [RMSNormDense(hidden, "silu", self.norm_eps, name=f"obs{i}") for i in range(self.post_layers)]
    self.post_logit = keras.layers.Dense(flat, kernel_initializer=TruncatedNormalFanIn(), name="obslogit")

  def build_for(self, embed_size: int, action_size: int):
    """Creates all variables for the given embedding and action sizes."""
    flat = self.stoch * self.classes
    self.core.build_for(flat, action_size)
    for layers, logit, width in ((self.prior, self.prior_logit, self.deter), (self.post, self.post_logit, None)):
      width = width or self.deter + embed_size
      for layer in layers:
        layer.build((None, width))
        width = self.units
      logit.build((None, width))
    self.built = True

  def _prior(self, deter):
    x = deter
    for layer in self.prior:
      x = layer(x)
    return self._stats(self.prior_logit, x)

  def img_step(self, prev_state, prev_action, seed, sample=True):
    """One step of the prior: the block GRU, then the dynamics predictor.

    With ``sample=False`` the prior is not sampled and ``stoch`` is omitted from the result.
    """
    deter = self.core(prev_state["deter"], prev_state["stoch"], prev_action)
    dist = self._prior(deter)
    if not sample:
      return dict(deter=deter, logits=dist.logits)
    return dict(deter=deter, stoch=tf.cast(dist.sample(seed), self.compute_dtype), logits=dist.logits)

  def embed_projection(self, embed):
    """The embedding's share of the first posterior layer's matmul."""
    return self.post[0].project(embed, self.deter)

  def _posterior(self, deter, embed_proj):
    x = self.post[0].finish(self.post[0].project(deter, 0, self.deter) + embed_proj)
    for layer in self.post[1:]:
      x = layer(x)
    return self._stats(self.post_logit, x)

  def get_config(self):
    config = keras.layers.Layer.get_config(self)
    config.update(
      deter=self.deter,
      hidden=self.units,
      stoch=self.stoch,
      classes=self.classes,
      unimix=self.unimix,
      blocks=self.blocks,
      prior_layers=self.prior_layers,
      post_layers=self.post_layers,
      dyn_layers=self.dyn_layers,
      norm_eps=self.norm_eps,
    )
    return config
