"""The author's current code's parameter names of the current generation's variables.

danijar/dreamerv3 e3f0224 names every parameter by its ninjax module path (``dyn/dynin0/kernel``,
``enc/mlp0norm/scale``, ``pol/head/action/logits/bias``, ...; ``agent.params`` of its ``Agent``).
These functions map dreamer_tf's variables of an agent built with ``--configs=nature`` to those
names, one name per variable: ``tools/parity.py check-update --generation=current`` copies the
author's freshly initialised parameters into dreamer_tf by them, and the tests that compare layers
to recorded outputs of the author's code set their weights by them. Nothing here imports the
author's code.
"""

from __future__ import annotations


def add_names(names: dict, prefix: str, layer, norm=None, norm_name: str | None = None) -> None:
  """Adds ``<prefix>/kernel``, ``<prefix>/bias`` and the norm's scale (``<prefix>norm/scale``) to ``names``."""
  names.update({f"{prefix}/kernel": layer.kernel, f"{prefix}/bias": layer.bias})
  if norm is not None:
    names[norm_name or f"{prefix}norm/scale"] = norm.scale


def block_gru_names(names: dict, scope: str, gru) -> None:
  """The author's names (``dreamerv3/rssm.py:RSSM._core``) of a :class:`BlockGRU`'s variables, under ``scope``."""
  for i, layer in enumerate(gru.inputs_in):
    add_names(names, f"{scope}/dynin{i}", layer.dense, layer.norm)
  for i, (layer, norm) in enumerate(zip(gru.hidden_layers, gru.hidden_norms)):
    add_names(names, f"{scope}/dynhid{i}", layer, norm)
  add_names(names, f"{scope}/dyngru", gru.gates)


def block_rssm_names(names: dict, rssm, scope: str = "dyn") -> None:
  """The author's names (``dreamerv3/rssm.py:RSSM``) of a :class:`BlockRSSM`'s variables."""
  block_gru_names(names, scope, rssm.core)
  for i, layer in enumerate(rssm.prior):
    add_names(names, f"{scope}/prior{i}", layer.dense, layer.norm)
  add_names(names, f"{scope}/priorlogit", rssm.prior_logit)
  for i, layer in enumerate(rssm.post):
    add_names(names, f"{scope}/obs{i}", layer.dense, layer.norm)
  add_names(names, f"{scope}/obslogit", rssm.post_logit)


def image_names(names: dict, enc, dec) -> None:
  """The author's names (``dreamerv3/rssm.py:Encoder/Decoder``) of the image encoder's and decoder's variables."""
  for i, (conv, norm) in enumerate(zip(enc.convs, enc.norms)):
    add_names(names, f"enc/cnn{i}", conv, norm)
  add_names(names, "dec/sp0", dec.deter_space)
  add_names(names, "dec/sp1", dec.stoch_hidden.dense, dec.stoch_hidden.norm)
  add_names(names, "dec/sp2", dec.stoch_space)
  names["dec/spnorm/scale"] = dec.space_norm.scale
  for conv, norm in zip(dec.convs, dec.norms):
    add_names(names, f"dec/{conv.name}", conv, norm)
  add_names(names, "dec/imgout", dec.out)


def mlp_names(names: dict, prefix: str, mlp) -> None:
  """An ``embodied/jax/nets.py:MLP`` (``<prefix>/linear<i>``, ``<prefix>/norm<i>/scale``) for an :class:`MLP`."""
  for i, layer in enumerate(mlp.hidden):
    add_names(names, f"{prefix}/linear{i}", layer.dense, layer.norm, f"{prefix}/norm{i}/scale")


def head_names(names: dict, prefix: str, head, outs: tuple[str, ...]) -> None:
  """An ``embodied/jax/heads.py:MLPHead`` (``<prefix>/mlp/...``, ``<prefix>/head/<out>``) for a :class:`Head`;
  ``outs`` names its output layer (and its ``std`` layer)."""
  mlp_names(names, f"{prefix}/mlp", head.trunk)
  for out, layer in zip(outs, (head.out, head.std)):
    add_names(names, f"{prefix}/head/{out}", layer)


def world_model_names(wm) -> dict:
  """``{author name: variable}`` for every trainable variable of a current-generation :class:`WorldModel`:
  encoder (``enc``), RSSM (``dyn``), decoder (``dec``), reward (``rew``) and continue (``con``) heads."""
  names = {}
  enc, dec = wm.encoder, wm.decoder
  if enc.mlp is not None:
    for i, layer in enumerate(enc.mlp.hidden):
      add_names(names, f"enc/mlp{i}", layer.dense, layer.norm)
  if enc.cnn is not None or dec.cnn is not None:
    image_names(names, enc.cnn, dec.cnn)
  block_rssm_names(names, wm.rssm)
  if dec.mlp is not None:
    mlp_names(names, "dec/mlp", dec.mlp)
    for key, layer in dec.vector_out.items():
      add_names(names, f"dec/vec/{key}/{'logits' if key in dec.classes else 'pred'}", layer)
  head_names(names, "rew", wm.reward_head, ("logits",))
  head_names(names, "con", wm.cont_head, ("logit",))
  return names


def actor_critic_names(ac) -> dict:
  """``{author name: variable}`` for the actor (``pol``), the critic (``val``), the slow critic
  (``slowval``) and the return normaliser (``retnorm``) of a current-generation :class:`ActorCritic`."""
  names = {}
  outs = ("action/logits",) if ac.discrete else ("action/mean", "action/stddev")
  head_names(names, "pol", ac.actor, outs)
  head_names(names, "val", ac.critic, ("logits",))
  head_names(names, "slowval", ac.slow_critic, ("logits",))
  names["retnorm/lo/value"] = ac.retnorm.low
  names["retnorm/hi/value"] = ac.retnorm.high
  return names


def row_orders(wm) -> dict:
  """``{author name: index array}`` of the kernels whose input rows dreamer_tf orders differently:
  ``ours = author[order]``. The author's vector decoder reads ``concat(stoch, deter)``
  (``dreamerv3/rssm.py:Decoder``), dreamer_tf's its features ``concat(deter, stoch)`` (as every head of
  both reads them): the same layer with its first kernel's rows permuted."""
  import numpy as np

  if wm.decoder.mlp is None:
    return {}
  deter = wm.rssm.deter
  stoch = wm.rssm.feat_size - deter
  return {"dec/mlp/linear0/kernel": np.concatenate([np.arange(stoch, stoch + deter), np.arange(stoch)])}


def to_ours(name: str, value, orders: dict):
  """The author's array ``value`` of parameter ``name`` (or of its optimizer slot) in dreamer_tf's layout."""
  return value[orders[name]] if name in orders else value


def to_author(name: str, value, orders: dict):
  """dreamer_tf's array ``value`` of parameter ``name`` (or of its optimizer slot) in the author's layout."""
  import numpy as np

  return value[np.argsort(orders[name])] if name in orders else value


def agent_names(agent) -> dict:
  """``{author name: variable}`` for every parameter of a current-generation :class:`DreamerAgent` that the
  author's ``Agent`` holds too (the optimizer's slots and counters are not in it)."""
  names = world_model_names(agent.world_model)
  names.update(actor_critic_names(agent.actor_critic))
  return names
