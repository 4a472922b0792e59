"""The reference side of ``tools/parity.py check-update``, run in the reference's venv.

Builds the agent of the author's 2023 release (``dreamerv3==1.5.0``) for a vector
observation and an action space read from the batch file, saves its freshly initialised world
model parameters (with ``--full`` all its parameters), then runs ``--updates`` world-model
updates (the reference's own ``WorldModel.train``: loss, gradients, global-norm clipping and its
optax Adam; with ``--full`` its whole ``Agent.train``, actor and critic in imagination included)
on that one fixed batch and writes each update's scalar metrics. Latents (and discrete actions)
are the straight-through mode instead of a sample, continuous actions the Normal's mean
(``OneHotDist.sample`` and ``Normal._sample_n`` are replaced in this process only), so that the
update is deterministic and dreamer_tf can repeat it exactly from the same parameters. It
imports nothing from dreamer_tf and copies none of the reference's code.

  python tools/parity_reference_update.py --batch=B.npz --out=DIR --updates=N [model size flags]

writes ``DIR/reference_params.npz`` (``agent/wm/...`` names) and ``DIR/reference_updates.json``.
With ``--sample_seeds=1,2,...`` its samplers stay its own (a fresh key per update, split from
``PRNGKey(seed)``) and it runs the updates once per seed from the same parameters, into
``DIR/reference_sampled.json`` (``{seed: rows}``).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch", type=pathlib.Path, required=True, help="npz: vector, action, reward, is_* [B, T, ...]")
  p.add_argument("--out", type=pathlib.Path, required=True)
  p.add_argument("--updates", type=int, required=True)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--discrete", action="store_true", help="the action is one-hot over a discrete space")
  p.add_argument("--full", action="store_true", help="the whole agent update: world model, actor and critic")
  p.add_argument("--batches", type=int, default=1, help="the file holds this many batches; update i takes i mod N")
  p.add_argument(
    "--sample_seeds",
    default="",
    help="comma-separated: its own samplers instead of modes, one run from the same parameters per seed",
  )
  for name in ("deter", "units", "layers", "stoch", "classes", "mlp_layers", "mlp_units"):
    p.add_argument(f"--{name}", type=int, required=True)
  return p.parse_args(argv)


def _deterministic_samples(jax, jnp, jaxutils) -> None:
  """Makes every one-hot sample the straight-through mode, ``onehot(argmax) + p - sg(p)``, and every
  Normal sample its mean."""

  def mode_sample(self, sample_shape=(), seed=None):
    del seed
    probs = self.probs_parameter()
    onehot = jax.nn.one_hot(jnp.argmax(probs, -1), probs.shape[-1], dtype=probs.dtype)
    value = jax.lax.stop_gradient(onehot) + (probs - jax.lax.stop_gradient(probs))
    shape = tuple(int(n) for n in np.atleast_1d(sample_shape)) if np.size(sample_shape) else ()
    return jnp.broadcast_to(value, shape + value.shape)

  jaxutils.OneHotDist.sample = mode_sample

  # The continuous actor's Normal: its mean (reparameterised, so the return's gradient reaches it).
  from tensorflow_probability.substrates import jax as tfp

  def mean_sample_n(self, n, seed=None):
    del seed
    shape = jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.scale))
    return jnp.broadcast_to(self.loc, (n, *shape))

  tfp.distributions.Normal._sample_n = mean_sample_n


def main(argv=None) -> None:
  args = parse_args(argv)
  args.out.mkdir(parents=True, exist_ok=True)
  import dreamerv3  # noqa: F401  (puts the reference's embodied package on sys.path)
  import embodied
  import jax
  import jax.numpy as jnp
  from dreamerv3 import agent as agt
  from dreamerv3 import jaxutils
  from dreamerv3 import ninjax as nj

  sample_seeds = [int(x) for x in args.sample_seeds.split(",") if x.strip()]
  if not sample_seeds:
    _deterministic_samples(jax, jnp, jaxutils)
  batch = dict(np.load(args.batch))
  config = embodied.Config(agt.Agent.configs["defaults"]).update(agt.Agent.configs["dmc_proprio"])
  flags = {
    "rssm.deter": args.deter,
    "rssm.stoch": args.stoch,
    "rssm.classes": args.classes,
    r".*\.units": args.units,
    r".*\.layers": args.layers,
    "encoder.mlp_layers": args.mlp_layers,
    "encoder.mlp_units": args.mlp_units,
    "decoder.mlp_layers": args.mlp_layers,
    "decoder.mlp_units": args.mlp_units,
    "batch_size": batch["reward"].shape[0] // args.batches,
    "batch_length": batch["reward"].shape[1],
    "seed": args.seed,
    "jax.platform": "cpu",
    "jax.precision": "float32",
  }
  config = embodied.Flags(config).parse([item for k, v in flags.items() for item in (f"--{k}", str(v))])
  obs_space = {
    "vector": embodied.Space(np.float32, batch["vector"].shape[2:]),
    "reward": embodied.Space(np.float32),
    "is_first": embodied.Space(bool),
    "is_last": embodied.Space(bool),
    "is_terminal": embodied.Space(bool),
  }
  low = 0 if args.discrete else -1
  action = embodied.Space(np.float32, batch["action"].shape[2:], low, 1)
  if args.discrete:
    action._discrete = True  # What its OneHotAction wrapper marks.
  act_space = {"action": action, "reset": embodied.Space(bool)}
  agent = agt.Agent(obs_space, act_space, embodied.Counter(), config)
  jax.config.update("jax_transfer_guard", "allow")  # The agent disallows implicit transfers.
  # The parameters (the optimizers' states, nested tuples, stay out).
  prefix = "agent/" if args.full else "agent/wm/"
  params = {k: np.asarray(v) for k, v in agent.varibs.items() if k.startswith(prefix) and hasattr(v, "shape")}
  np.savez(args.out / "reference_params.npz", **params)

  inner = agent.agent

  def world_model_update(data):
    data = inner.preprocess(data)
    _, _, metrics = inner.wm.train(data, inner.wm.initial(len(data["is_first"])))
    return metrics

  def agent_update(data):  # Agent.train: preprocess, world model, then actor and critic in imagination.
    _, _, metrics = inner.train(data, inner.train_initial(len(data["is_first"])))
    return metrics

  update = jax.jit(nj.pure(agent_update if args.full else world_model_update))
  size = batch["reward"].shape[0] // args.batches
  datas = [{k: jnp.asarray(v[i * size : (i + 1) * size]) for k, v in batch.items()} for i in range(args.batches)]

  def run(rng, split):
    varibs, rows = dict(agent.varibs), []
    for step in range(args.updates):
      data = datas[step % args.batches]
      if split:  # A fresh key per update, as its agent draws one per train call.
        rng, key = jax.random.split(rng)
      else:
        key = rng
      metrics, varibs = update(varibs, key, data)
      rows.append({k: float(np.asarray(v)) for k, v in metrics.items() if np.asarray(v).ndim == 0})
    return rows

  if sample_seeds:  # Its own samplers, from the same parameters, once per seed.
    runs = {str(seed): run(jax.random.PRNGKey(seed), True) for seed in sample_seeds}
    (args.out / "reference_sampled.json").write_text(json.dumps(runs))
  else:
    (args.out / "reference_updates.json").write_text(json.dumps(run(jax.random.PRNGKey(args.seed), False)))


if __name__ == "__main__":
  main()
