"""``tools/parity.py check-update --generation=current``: dreamer_tf's whole current-generation update
against the author's current code (danijar/dreamerv3 e3f0224), number for number.

Both sides start from the *same* parameters: the author's ``Agent`` (its own ``defaults`` config with
small sizes, ``jax.compute_dtype float32`` on the CPU, ``replay_context 0``, or 1 with ``--context=1``)
initialises them, and they are copied into dreamer_tf's agent built with ``--configs=nature`` and the
same sizes, by the author's parameter names (:mod:`dreamer_tf.agent.author_names`). Both then train on the *same*
fixed batch (``tools/parity_update.py:collect_batch``) with every latent and discrete action the
straight-through mode and every continuous action the actor's mean, patched in the two check
processes only. One update is the whole ``Agent.train`` of the current code: the world-model loss,
imagination from every posterior state, the actor and critic losses, the replay value loss, their
sum differentiated once and applied by one LaProp optimizer (AGC, RMS scaling, momentum, warm-up),
then the slow critic. The check compares

* every update's losses and metrics (:data:`METRICS`), and
* after the updates in ``--save_at`` (default: the first, the second and the last), every parameter's
  change since the start, the optimizer's squared-gradient average ``nu`` (after the first update
  ``(1 - beta_2) g^2`` of each variable's clipped gradient: a per-variable gradient check) and its
  momentum ``mu``, the slow critic and the return normaliser,

and with ``--context=1`` (both sides' replay context: windows of 1 + T steps, the same stored latents of
every step, :func:`add_replay_context`) every update's written-back latents (dreamer_tf's
``extra["replay"]``, the author's ``outs["replay"]``, :func:`compare_replay`),

each within ``rtol * |reference| + atol``; the command fails when a metric or a written-back latent
differs before update ``--agree`` (default: any update) or a state after an update before
``--state_agree`` (default 2: the first update, whose ``nu`` and ``mu`` hold every variable's gradient,
and the first that moves the parameters). Later states are reported, not required: LaProp divides each
element's gradient by its own RMS, so an element whose gradient is near 0 (the nearly uniform policy's
at the start, whose entropy gradient vanishes there) moves by a full step in a direction rounding
decides, and such elements part while every loss and metric still agrees. The learning rate is 0 at the
first update (the warm-up reads the count before it moves) and ``4e-5 * (t - 1) / 1000`` after, so
parameters move by about ``1e-8`` per update: their changes, not their values, are compared, with
``atol`` scaled by each array's largest change.

With ``--jit_compile`` dreamer_tf's update is compiled by XLA, as ``run.jit_compile`` compiles its train step.
The reference process rounds the author's twohot products before their mirrored pairs are added
(``parity_reference_current_update.py``), so its zero-initialised heads predict 0; compiled, dreamer_tf's
mirrored sum keeps XLA's fused multiply-adds and they predict about -0.16 (``imag_value``, ``advantage`` and
``actor_loss`` then differ from update 0, section e of docs/parity.md).

  python tools/parity.py check-update --generation=current --source=CHECKOUT --task=gym_CartPole-v1 \\
      --updates=10 [--context=1] [--jit_compile] --out=DIR
"""

from __future__ import annotations

import argparse
import importlib
import json
import pathlib
import subprocess
import sys

import numpy as np
from parity_update import collect_batch, write_result

REFERENCE_SCRIPT = pathlib.Path(__file__).resolve().parent / "parity_reference_current_update.py"

# dreamer_tf's metric name, the author's, and the factor that makes the author's dreamer_tf's: its loss/<k>
# are the per-term means before the loss scales, dreamer_tf's repval_loss is after its scale 0.3. ``loss``
# is dreamer_tf's total (model_loss + actor_loss + critic_loss + repval_loss, what it differentiates).
METRICS = (
  ("vector_loss", "loss/vector", 1.0),
  ("reward_loss", "loss/rew", 1.0),
  ("cont_loss", "loss/con", 1.0),
  ("dyn_loss", "loss/dyn", 1.0),
  ("rep_loss", "loss/rep", 1.0),
  ("prior_ent", "dyn_ent", 1.0),
  ("post_ent", "rep_ent", 1.0),
  ("actor_loss", "loss/policy", 1.0),
  ("critic_loss", "loss/value", 1.0),
  ("repval_loss", "loss/repval", 0.3),
  ("imag_value", "val", 1.0),
  ("imag_weight", "weight", 1.0),
  ("advantage", "adv", 1.0),
  ("actor_entropy", "ent/action", 1.0),
  ("loss", "opt/loss", 1.0),
  ("grad_norm", "opt/grad_norm", 1.0),
)
SIZE_ARGS = ("deter", "units", "stoch", "classes")
# The written-back latents compared under --context=1: name, dreamer_tf's extra["replay"] key, the author's
# outs["replay"] key.
REPLAY_LATENTS = (("deter", "latent/deter", "dyn/deter"), ("stoch", "latent/stoch", "dyn/stoch"))


def _context_start_initial(start):
  """``split_context`` with its start latent the initial state (zeros) instead of the stored one."""
  return {**start, "deter": start["deter"] * 0.0, "stoch": start["stoch"] * 0.0}


def _context_action_zero(start):
  """``split_context`` with a zero previous action (an episode start's) instead of the action at step K - 1."""
  return {**start, "action": start["action"] * 0.0}


# ``--mutate`` values that change one line of dreamer_tf's replay context handling (``DreamerAgent.split_context``'s
# start state), the context check's own test: no setting expresses them, so run_ours wraps the built agent's
# ``split_context`` in this process only, as it replaces the samplers.
CONTEXT_MUTATIONS = {
  "context.start=initial": _context_start_initial,
  "context.action=zero": _context_action_zero,
}


def add_replay_context(batch: dict, context: int, args) -> dict:
  """The batch of ``context + T`` steps with what the replay context reads, the same for both sides: per
  step a stored latent (``latent_deter`` uniform in [-1, 1] as the GRU's output, ``latent_stoch`` one-hot
  latents), per window an id ``replay_id`` (dreamer_tf's, int64) and per step a ``stepid`` (the author's,
  20 bytes), all drawn from ``args.seed``."""
  if not context:
    return batch
  B, L = batch["reward"].shape
  rng = np.random.default_rng([args.seed, 19])
  out = dict(batch)
  out["latent_deter"] = rng.uniform(-1.0, 1.0, (B, L, args.deter)).astype(np.float32)
  index = rng.integers(args.classes, size=(B, L, args.stoch))
  out["latent_stoch"] = np.eye(args.classes, dtype=np.float32)[index]
  out["replay_id"] = rng.integers(2**40, size=B).astype(np.int64)
  out["stepid"] = rng.integers(256, size=(B, L, 20)).astype(np.uint8)
  return out


def _mode_sample(self, seed):
  """Replaces ``OneHotCategorical.sample`` in the check: the straight-through mode."""
  del seed
  return self.mode()


def _mean_sample(self, seed):
  """Replaces ``BoundedNormal.sample`` in the check: the mean."""
  del seed
  return self.loc


def build_ours(args, batch: dict, actions: int):
  """dreamer_tf's agent of the current generation for the check's sizes and the batch's spaces."""
  importlib.import_module("dreamer_tf")  # First: its quiet start filters TensorFlow's start-up noise.
  import tensorflow as tf
  from tf_agents.specs import tensor_spec

  from dreamer_tf.agent.dreamer_agent import DreamerAgent, time_step_spec_from
  from dreamer_tf.config import load_config

  overrides = [
    f"model.deter={args.deter}",
    f"model.units={args.units}",
    f"model.vector_units={args.units}",
    f"model.stoch={args.stoch}",
    f"model.classes={args.classes}",
    f"replay.batch_size={args.batch_size}",
    f"replay.batch_length={args.batch_length}",
    "run.precision=float32",
    # 0: both sides train every window from the initial state (the author's replay_context 0); 1: from the
    # stored latent of the window's first step, trained on the rest (replay_context 1, nature's default).
    f"replay.context={getattr(args, 'context', 0)}",
  ]
  mutate = getattr(args, "mutate", "")  # The check's own test: one setting or one constant changed.
  if mutate in CONTEXT_MUTATIONS:  # Applied to the built agent by run_ours.
    pass
  elif mutate.startswith("dreamer_tf."):  # A module constant, e.g. dreamer_tf.agent.networks.block_gru.UPDATE_BIAS=0
    import ast

    key, value = mutate.split("=", 1)
    module, attr = key.rsplit(".", 1)
    setattr(importlib.import_module(module), attr, ast.literal_eval(value))
  elif mutate:
    overrides.append(mutate)
  config = load_config(args.task, ["nature"], overrides)
  obs_spec = {"vector": tf.TensorSpec(batch["vector"].shape[2:], tf.float32, "vector")}
  if actions:
    action_spec = tensor_spec.BoundedTensorSpec([], tf.int32, 0, actions - 1, "action")
  else:
    action_spec = tensor_spec.BoundedTensorSpec(batch["action"].shape[2:], tf.float32, -1.0, 1.0, "action")
  return DreamerAgent(time_step_spec_from(obs_spec), action_spec, config, seed=args.seed)


def assign_reference(agent, params: dict) -> dict:
  """Copies the author's parameters into ``agent`` by name; returns ``{author name: variable}``.

  Fails with one line when a trained variable has no author name or a name's shape differs."""
  from dreamer_tf.agent.author_names import agent_names, row_orders, to_ours

  names = agent_names(agent)
  orders = row_orders(agent.world_model)
  wm, ac = agent.world_model, agent.actor_critic
  trained = wm.trainable_variables + ac.actor.trainable_variables + ac.critic.trainable_variables
  unmapped = {v.ref() for v in trained + ac.slow_critic.weights} - {v.ref() for v in names.values()}
  if unmapped:
    raise SystemExit(f"error: {len(unmapped)} variables have no author name; extend dreamer_tf/agent/author_names.py")
  for name, variable in names.items():
    if name not in params or params[name].shape != tuple(variable.shape):
      got = params[name].shape if name in params else "missing"
      raise SystemExit(f"error: the author's parameter {name} is {got}, dreamer_tf's is {tuple(variable.shape)}")
    variable.assign(to_ours(name, params[name], orders))
  return names


def state_of(agent, names: dict) -> dict:
  """Every named variable's value, and the LaProp slots as ``opt/nu/<name>`` and ``opt/mu/<name>``, in the
  author's layout."""
  from dreamer_tf.agent.author_names import row_orders, to_author

  orders = row_orders(agent.world_model)
  opt = agent.optimizers.model
  trained = {v.ref() for group in agent._variable_groups() for v in group}
  state = {name: to_author(name, variable.numpy(), orders) for name, variable in names.items()}
  for name, variable in names.items():
    if variable.ref() not in trained:
      continue
    index = opt._index_dict[opt._var_key(variable)]
    state[f"opt/nu/{name}"] = to_author(name, opt._nus[index].numpy(), orders)
    state[f"opt/mu/{name}"] = to_author(name, opt._mus[index].numpy(), orders)
  return state


def run_ours(args, batch: dict, actions: int, params: dict, save_at) -> tuple[list[dict], dict, list[dict]]:
  """dreamer_tf's updates from the author's parameters, deterministic samples; returns the metrics per
  update, ``{update: state}`` after the updates in ``save_at`` and per update the written-back
  ``extra["replay"]`` (``ids``, ``latent/deter``, ``latent/stoch``; none without the replay context)."""
  agent = build_ours(args, batch, actions)
  import tensorflow as tf

  from dreamer_tf.agent import distributions

  names = assign_reference(agent, params)
  own = ("vector", "latent_deter", "latent_stoch", "stepid")
  experience = {k: tf.constant(v) for k, v in batch.items() if k not in own}
  experience["obs"] = {"vector": tf.constant(batch["vector"])}
  if getattr(args, "context", 0):
    experience["latent"] = {"deter": tf.constant(batch["latent_deter"]), "stoch": tf.constant(batch["latent_stoch"])}
  mutation = CONTEXT_MUTATIONS.get(getattr(args, "mutate", ""))
  if mutation:
    split_context = agent.split_context

    def mutated(data):
      data, start, ids = split_context(data)
      return data, mutation(start), ids

    agent.split_context = mutated

  jit_compile = bool(getattr(args, "jit_compile", False))  # --jit_compile: as run.jit_compile does.
  if jit_compile:
    from dreamer_tf.distribute import undo_single_threaded_eigen

    undo_single_threaded_eigen()  # As distributed_train_fn does, before XLA reads XLA_FLAGS.

  @tf.function(jit_compile=jit_compile)
  def update(experience):
    return agent._train(experience).extra

  samplers = (distributions.OneHotCategorical.sample, distributions.BoundedNormal.sample)
  distributions.OneHotCategorical.sample = _mode_sample
  distributions.BoundedNormal.sample = _mean_sample
  rows, states, replay = [], {}, []
  try:
    for i in range(args.updates):
      extra = update(experience)
      if "replay" in extra:
        replay.append({k: v.numpy() for k, v in extra.pop("replay").items()})
      row = {k: float(v) for k, v in extra.items()}
      row["loss"] = row["model_loss"] + row["actor_loss"] + row["critic_loss"] + row.get("repval_loss", 0.0)
      rows.append(row)
      if i in save_at:
        states[i] = state_of(agent, names)
  finally:
    distributions.OneHotCategorical.sample, distributions.BoundedNormal.sample = samplers
  return rows, states, replay


def reference_updates(args, python: pathlib.Path, env: dict, actions: int, save_at) -> tuple[dict, list, dict, list]:
  """Runs the current code's side; returns its initial parameters, rows, ``{update: state}`` and per update
  its ``outs["replay"]`` (``stepid``, ``dyn/deter``, ``dyn/stoch``; none without the replay context)."""
  context = getattr(args, "context", 0)
  cmd = [str(python), str(REFERENCE_SCRIPT), f"--source={args.source}", f"--batch={args.out / 'batch.npz'}"]
  cmd += [f"--out={args.out}", f"--updates={args.updates}", f"--seed={args.seed}", f"--discrete={actions}"]
  cmd += [f"--context={context}"]
  cmd += [f"--{k}={getattr(args, k)}" for k in SIZE_ARGS]
  cmd += [f"--save_at={','.join(map(str, sorted(save_at)))}"]
  log = args.out / "reference.log"
  with open(log, "w") as f:
    code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
  if code:
    tail = log.read_text().strip().splitlines()[-1:]
    raise SystemExit(f"error: the current code's side failed ({tail[0] if tail else code}); see {log}")
  params = dict(np.load(args.out / "reference_params.npz"))
  rows = json.loads((args.out / "reference_updates.json").read_text())
  states = {i: dict(np.load(args.out / f"reference_state_{i}.npz")) for i in save_at}
  replay = [dict(np.load(args.out / f"reference_replay_{i}.npz")) for i in range(args.updates)] if context else []
  return params, rows, states, replay


def compare_metrics(ours: list[dict], reference: list[dict], rtol: float, atol: float) -> dict:
  """Per update and metric ``[ours, reference]``; the first update where any differs by more than
  ``rtol * |reference| + atol``, the metrics that do, and the median relative difference."""
  updates, first, failing, rel = [], None, [], []
  missing = sorted({r for _, r, _ in METRICS} - set(reference[0])) + sorted({n for n, _, _ in METRICS} - set(ours[0]))
  if missing:
    raise SystemExit(f"error: metrics missing from a side: {', '.join(missing)}")
  for i, (a, b) in enumerate(zip(ours, reference)):
    row = {name: [a[name], b[ref] * factor] for name, ref, factor in METRICS}
    bad = [k for k, (x, y) in row.items() if abs(x - y) > rtol * abs(y) + atol]
    rel += [abs(x - y) / max(abs(y), 1e-12) for x, y in row.values() if abs(x - y) > atol]
    if bad and first is None:
      first, failing = i, bad
    updates.append(row)
  median = float(np.median(rel)) if rel else 0.0
  return {"updates": updates, "first_difference": first, "differing": failing, "median_relative_difference": median}


def compare_states(ours: dict, reference: dict, initial: dict, rtol: float, atol: float) -> dict:
  """Per saved update: for each array group (parameter changes, ``nu``, ``mu``, slow critic, return
  normaliser), the largest and median relative difference and the arrays outside
  ``rtol * |reference| + atol * max|reference|`` (changes since the start for the trained parameters,
  values for the slow critic, the return normaliser and the slots)."""
  out = {}
  for step in sorted(ours):
    a_all, b_all = ours[step], reference[step]
    groups = {}
    for name, a in a_all.items():
      b = b_all[name]
      if name.startswith("opt/"):
        group = "optimizer " + name.split("/")[1]
      elif name.startswith(("slowval/", "retnorm/")):
        group = name.split("/")[0]
      else:
        group = "parameter changes"
      if group == "parameter changes":  # The slow critic and the normaliser: by value.
        a, b = a - initial[name], b - initial[name]
      scale = float(np.abs(b).max()) if b.size else 0.0
      diff = np.abs(a - b)
      bound = rtol * np.abs(b) + atol * max(scale, 1e-30)
      info = groups.setdefault(group, {"arrays": 0, "max_relative": 0.0, "relative": [], "outside": []})
      info["arrays"] += 1
      rel = diff / np.maximum(np.abs(b), atol * max(scale, 1e-30))
      info["max_relative"] = max(info["max_relative"], float(rel.max()) if rel.size else 0.0)
      info["relative"].append(rel.reshape(-1))
      if (diff > bound).any():
        info["outside"].append(name)
    for info in groups.values():
      joined = np.concatenate(info.pop("relative"))
      info["median_relative"] = float(np.median(joined)) if joined.size else 0.0
    out[step] = groups
  return out


def compare_replay(ours: list[dict], reference: list[dict], batch: dict, rtol: float, atol: float) -> dict:
  """Per update, the written-back latents of the T trained steps, dreamer_tf's ``extra["replay"]`` against
  the author's ``outs["replay"]`` elementwise within ``rtol * |reference| + atol``: for ``deter`` and
  ``stoch`` the largest absolute difference and the elements outside; the first update where any is
  outside (or a shape differs); and whether the ids came back (dreamer_tf's ``ids`` the windows'
  ``replay_id``, the author's ``stepid`` those of steps 1..T, i.e. written back at offset 1)."""
  updates, first = [], None
  context = batch["reward"].shape[1] - ours[0]["latent/deter"].shape[1] if ours else 0
  ids = bool(ours) and len(ours) == len(reference)  # Each side wrote back once per update.
  ids = ids and all(np.array_equal(o["ids"], batch["replay_id"]) for o in ours)
  ids = ids and all(np.array_equal(r["stepid"], batch["stepid"][:, context:]) for r in reference)
  for i, (a_all, b_all) in enumerate(zip(ours, reference)):
    row = {}
    for name, ours_key, reference_key in REPLAY_LATENTS:
      a, b = a_all[ours_key], b_all[reference_key]
      if a.shape != b.shape:
        row[name] = {"shape": [list(a.shape), list(b.shape)], "outside": -1}
        continue
      diff = np.abs(a.astype(np.float64) - b)
      outside = int((diff > rtol * np.abs(b) + atol).sum())
      row[name] = {"max_abs": float(diff.max()), "outside": outside, "elements": int(b.size)}
    if first is None and any(c["outside"] for c in row.values()):
      first = i
    updates.append(row)
  return {
    "context": context,
    "windows_starting_from_the_stored_latent": int((~batch["is_first"][:, context]).sum()),
    "ids_written_back": bool(ids),
    "updates": updates,
    "first_difference": first if ids else 0,
  }


def check_update(args: argparse.Namespace, reference_python: pathlib.Path, env: dict) -> int:
  """Runs both sides; returns the exit code (1 when they part before ``args.agree`` updates)."""
  args.out.mkdir(parents=True, exist_ok=True)
  context = getattr(args, "context", 0)
  length = args.batch_length + context  # The replay context's steps come first.
  batch, actions = collect_batch(args.task[len("gym_") :], args.batch_size, length, args.seed)
  batch = add_replay_context(batch, context, args)
  np.savez(args.out / "batch.npz", **batch)  # Discrete actions as indices: the current code's format too.
  save_at = set(args.save_at) if args.save_at else {0, min(1, args.updates - 1), args.updates - 1}
  save_at = {i for i in save_at if 0 <= i < args.updates}
  params, reference, ref_states, ref_replay = reference_updates(args, reference_python, env, actions, save_at)
  ours, our_states, our_replay = run_ours(args, batch, actions, params, save_at)
  result = compare_metrics(ours, reference, args.rtol, args.atol)
  states = compare_states(our_states, ref_states, params, args.state_rtol, args.state_atol)
  state_first = min(
    (s for s, g in states.items() if s < args.state_agree and any(i["outside"] for i in g.values())), default=None
  )
  replay = compare_replay(our_replay, ref_replay, batch, args.rtol, args.atol) if context else None
  replay_first = replay["first_difference"] if replay else None
  firsts = [x for x in (result["first_difference"], state_first, replay_first) if x is not None]
  first = min(firsts) if firsts else None
  passed = first is None or first >= args.agree
  result.update(
    task=args.task,
    generation="current",
    settings={
      k: getattr(args, k)
      for k in (*SIZE_ARGS, "batch_size", "batch_length", "seed", "updates", "agree", "rtol", "atol")
      + ("state_rtol", "state_atol", "state_agree", "save_at", "mutate", "context", "jit_compile")
    },
    reference_source=str(args.source),
    terminations_in_batch=int(batch["is_terminal"].sum()),
    states={str(k): v for k, v in states.items()},
    first_state_difference=state_first,
    **({"replay": replay, "first_replay_difference": replay_first} if replay else {}),
    passed=passed,
  )
  name = "update_check_current.json" if not args.mutate else "update_check_current_mutated.json"
  write_result(args.out / name, result)
  metric_first = result["first_difference"]
  shown = sorted({0, 1, args.updates - 1} | ({metric_first} if metric_first is not None else set()))
  for i in (i for i in shown if i < args.updates):
    row = result["updates"][i]
    print(f"update {i:3d}  " + "  ".join(f"{k} {x:.6g}/{y:.6g}" for k, (x, y) in row.items()), flush=True)
  for step, groups in states.items():
    cells = "; ".join(
      f"{g} max rel {i['max_relative']:.2g} median {i['median_relative']:.2g}"
      + (f" OUTSIDE {len(i['outside'])}/{i['arrays']} ({', '.join(i['outside'][:3])})" if i["outside"] else "")
      for g, i in groups.items()
    )
    print(f"state after update {step}: {cells}", flush=True)
  if replay:
    for i in sorted({0, 1, args.updates - 1} | ({replay_first} if replay_first is not None else set())):
      if i < len(replay["updates"]):
        describe = lambda c: (
          f"max abs {c['max_abs']:.2g}, {c['outside']}/{c['elements']} outside"
          if "max_abs" in c
          else f"shapes {c['shape']}"
        )
        cells = "; ".join(f"{k} {describe(c)}" for k, c in replay["updates"][i].items())
        print(f"written-back latents after update {i}: {cells}", flush=True)
    print(
      f"replay context {context}: {replay['windows_starting_from_the_stored_latent']}/{args.batch_size} windows start "
      f"from the stored latent; ids written back: {replay['ids_written_back']}",
      flush=True,
    )
  where = "never" if first is None else f"first at update {first}"
  verdict = "agree" if passed else "DIFFER"
  print(
    f"dreamer_tf / current code {verdict}: a difference above the tolerances {where} (metrics: rtol {args.rtol:g} + "
    f"atol {args.atol:g}, median relative difference {result['median_relative_difference']:.2g}"
    + (f", differing {', '.join(result['differing'])}" if result["differing"] else "")
    + f"; states after updates before {args.state_agree}: rtol {args.state_rtol:g} + atol {args.state_atol:g} x "
    f"largest) (required: not before update {args.agree})"
  )
  print(f"wrote {args.out / name}")
  return 0 if passed else 1


if __name__ == "__main__":
  sys.exit("run it as: python tools/parity.py check-update --generation=current ...")
