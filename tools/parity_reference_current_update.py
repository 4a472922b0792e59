"""The current code's side of ``tools/parity.py check-update --generation=current``, run in its own venv.

Builds the agent of the author's current DreamerV3 code (a checkout of danijar/dreamerv3 at e3f0224,
given by ``--source``) for a vector observation and an action space read from the batch file, with its
own ``defaults`` config shrunk to the given sizes, ``jax.compute_dtype float32`` on the CPU and
``replay_context 0`` (``--context``: the batch's first steps are context, read from its ``latent_deter``,
``latent_stoch`` and ``stepid``); saves its freshly initialised parameters; then runs ``--updates`` calls of its
jitted train function (``dreamerv3/agent.py:Agent.train``: world model, imagination, actor, critic,
replay value loss, the one LaProp optimizer and the slow value) on that one fixed batch and writes
each update's scalar metrics and, after the updates in ``--save_at``, every parameter and optimizer
state. Latents and discrete actions are the (straight-through) mode instead of a sample and
continuous actions the Normal's mean (``embodied/jax/outs.py:Categorical.sample`` and
``Normal.sample`` are replaced in this process only), so that the update is deterministic and
dreamer_tf can repeat it from the same parameters. It imports nothing from dreamer_tf and copies none
of the author's code.

  python tools/parity_reference_current_update.py --source=CHECKOUT --batch=B.npz --out=DIR --updates=N \\
      --deter=64 --units=16 --stoch=4 --classes=4 [--discrete=N]

writes ``DIR/reference_params.npz`` (the author's parameter names: ``dyn/dynin0/kernel``, ...),
``DIR/reference_updates.json`` (one dict of metrics per update) and ``DIR/reference_state_<i>.npz``
(parameters and optimizer slots ``opt/nu/<name>``, ``opt/mu/<name>`` after update ``i``) and with
``--context`` ``DIR/reference_replay_<i>.npz`` (update ``i``'s ``outs["replay"]``: ``stepid``,
``dyn/deter``, ``dyn/stoch`` of the trained steps).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--source", type=pathlib.Path, required=True, help="a checkout of danijar/dreamerv3 (e3f0224)")
  p.add_argument("--batch", type=pathlib.Path, required=True, help="npz: vector, action, reward, is_* [B, T, ...]")
  p.add_argument("--out", type=pathlib.Path, required=True)
  p.add_argument("--updates", type=int, required=True)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--discrete", type=int, default=0, help="the number of discrete actions (0: continuous)")
  p.add_argument("--save_at", default="0", help="comma-separated updates after which to save the whole state")
  p.add_argument("--print_names", action="store_true", help="print the parameter names and shapes, then stop")
  p.add_argument(
    "--context",
    type=int,
    default=0,
    help="replay_context: the batch's first steps are context (its latent_deter, latent_stoch and stepid)",
  )
  for name in ("deter", "units", "stoch", "classes"):
    p.add_argument(f"--{name}", type=int, required=True)
  return p.parse_args(argv)


def _deterministic_samples(jax, jnp, outs) -> None:
  """Every categorical sample becomes its argmax (a one-hot latent then is the straight-through mode,
  ``onehot(argmax) + p - sg(p)``, as ``OneHot._onehot_with_grad`` makes it) and every Normal sample its
  mean."""

  def argmax_sample(self, seed, shape=()):
    del seed
    index = jnp.argmax(self.logits, -1)
    return jnp.broadcast_to(index, tuple(shape) + index.shape)

  def mean_sample(self, seed, shape=()):
    del seed
    return jnp.broadcast_to(self.mean, tuple(shape) + self.mean.shape)

  outs.Categorical.sample = argmax_sample
  outs.Normal.sample = mean_sample


def _rounded_twohot_products(jnp, outs) -> None:
  """``TwoHot.pred`` sums ``probs * bins`` in mirrored pairs (largest bins about 4.9e8) so that symmetric
  probabilities give exactly 0. Compiled by XLA on the CPU, each pair's add is fused with one of its
  multiplies (a fused multiply-add, no rounding of that product), and a value or reward head with
  uniform probabilities predicts -0.166 instead of 0 (per pair, rounding of up to 0.1). Here the
  products are rounded to float32 before the pairs are added (a ``where`` between them blocks the
  fusion), as separate multiply and add kernels round them (dreamer_tf's TensorFlow ops): the same
  formula, the same order of sums."""

  def pred(self):
    n = self.bins.shape[-1]
    h = n // 2
    products = self.probs * self.bins
    products = jnp.where(jnp.isnan(products), jnp.zeros_like(products), products)  # rounded, not fused
    mirrored = products[..., :h][..., ::-1] + products[..., n - h :]
    return self.unsquash(products[..., h : n - h].sum(-1) + mirrored.sum(-1))

  outs.TwoHot.pred = pred


def config_of(args, yaml_text: str, elements, batch_size: int, batch_length: int):
  """The author's ``defaults`` config with this check's sizes (every other setting its own)."""
  import ruamel.yaml as yaml

  configs = yaml.YAML(typ="safe").load(yaml_text)
  config = elements.Config(configs["defaults"])
  flags = {
    r".*\.rssm.deter": args.deter,
    r".*\.rssm.hidden": args.units,  # dreamer_tf's RSSM width is model.units.
    r".*\.rssm.stoch": args.stoch,
    r".*\.rssm.classes": args.classes,
    r".*\.units": args.units,
    "batch_size": batch_size,
    "batch_length": batch_length,
    "replay_context": args.context,
    "seed": args.seed,
    "jax.platform": "cpu",
    "jax.compute_dtype": "float32",
    "jax.prealloc": False,
    "logdir": str(args.out / "logdir"),
  }
  return elements.Flags(config).parse([item for k, v in flags.items() for item in (f"--{k}", str(v))])


def main(argv=None) -> None:
  args = parse_args(argv)
  args.out.mkdir(parents=True, exist_ok=True)
  sys.path.insert(0, str(args.source.resolve()))
  import elements
  import embodied  # noqa: F401
  import jax
  import jax.numpy as jnp
  from dreamerv3.agent import Agent
  from embodied.jax import internal, outs

  _deterministic_samples(jax, jnp, outs)
  _rounded_twohot_products(jnp, outs)
  batch = dict(np.load(args.batch))
  B, T = batch["reward"].shape
  T -= args.context  # batch_length: the trained steps; the data has replay_context more.
  config = config_of(args, (args.source / "dreamerv3" / "configs.yaml").read_text(), elements, B, T)
  obs_space = {
    "vector": elements.Space(np.float32, batch["vector"].shape[2:]),
    "reward": elements.Space(np.float32),
    "is_first": elements.Space(bool),
    "is_last": elements.Space(bool),
    "is_terminal": elements.Space(bool),
  }
  if args.discrete:
    act_space = {"action": elements.Space(np.int32, (), 0, args.discrete)}
  else:
    act_space = {"action": elements.Space(np.float32, batch["action"].shape[2:], -1.0, 1.0)}
  jaxcfg = dict(config.jax, precompile=False, profiler=False)
  agent = Agent(
    obs_space,
    act_space,
    elements.Config(
      **config.agent,
      logdir=config.logdir,
      seed=config.seed,
      jax=jaxcfg,
      batch_size=B,
      batch_length=T,
      replay_context=args.context,
      report_length=config.report_length,
      replica=0,
      replicas=1,
    ),
  )
  jax.config.update("jax_transfer_guard", "allow")  # The agent disallows implicit transfers.
  if args.print_names:
    for name, value in sorted(agent.params.items()):
      print(name, tuple(value.shape))
    return
  params = {k: np.asarray(v) for k, v in agent.params.items()}
  np.savez(args.out / "reference_params.npz", **params)

  data = {k: batch[k] for k in ("vector", "reward", "is_first", "is_last", "is_terminal")}
  data["action"] = batch["action"].astype(np.int32 if args.discrete else np.float32)
  L = T + args.context
  data["consec"] = np.zeros((B, L), np.int32)  # Every window is a first chunk: the replay context applies.
  data["stepid"] = batch["stepid"] if "stepid" in batch else np.zeros((B, L, 20), np.uint8)
  if args.context:  # The stored latents, as the replay holds the policy's dyn entries (rssm.py entry_space).
    data["dyn/deter"] = batch["latent_deter"].astype(np.float32)
    data["dyn/stoch"] = batch["latent_stoch"].astype(np.float32)
  data = internal.device_put(data, agent.train_sharded)
  save_at = {int(x) for x in args.save_at.split(",") if x.strip()}
  rows = []
  for step in range(args.updates):
    carry = agent.init_train(B)  # Every window starts with is_first: the carry is reset anyway.
    allo = {k: v for k, v in agent.params.items() if k in agent.policy_keys}
    dona = {k: v for k, v in agent.params.items() if k not in agent.policy_keys}
    seed = agent._seeds(step, agent.train_mirrored)
    agent.params, _, outs, mets = agent._train(dona, allo, seed, carry, data)
    rows.append({k: float(np.asarray(v)) for k, v in mets.items() if np.asarray(v).ndim == 0})
    if args.context:  # What the update writes back into replay: stepid, dyn/deter, dyn/stoch of steps K..
      np.savez(args.out / f"reference_replay_{step}.npz", **{k: np.asarray(v) for k, v in outs["replay"].items()})
    if step in save_at:
      np.savez(args.out / f"reference_state_{step}.npz", **_state(agent.params))
  (args.out / "reference_updates.json").write_text(json.dumps(rows))


def _state(params: dict) -> dict:
  """Parameters by name, and the optimizer's LaProp slots as ``opt/nu/<name>`` and ``opt/mu/<name>``.

  ``agent.params`` holds ``optax.chain(clip_by_agc, scale_by_rms, scale_by_momentum, ...)``'s state
  flattened: ``opt/state/1/1/<name>`` is ``nu``, ``opt/state/2/1/<name>`` is ``mu``."""
  state = {}
  for name, value in params.items():
    for index, slot in (("1", "nu"), ("2", "mu")):
      if name.startswith(f"opt/state/{index}/1/"):
        name = f"opt/{slot}/" + name[len(f"opt/state/{index}/1/") :]
    if not name.startswith("opt/state/"):
      state[name] = np.asarray(value)
  return state


if __name__ == "__main__":
  main()
