"""``tools/parity.py check-update``: dreamer_tf's world-model update against the 2023 code's, number for number.

The learning curves of ``tools/parity.py run`` compare two random processes; this check removes
the randomness. Both sides start from the *same* parameters (the reference's freshly
initialised world model, copied into dreamer_tf's by name) and train on the *same* fixed batch,
with every latent the straight-through mode instead of a sample (and with ``--full`` every
imagined action: a discrete actor's mode, a continuous actor's mean), patched in the two check
processes only. Each side then runs ``--updates`` world-model updates: the loss of Eq. 5,
its gradients, the global-norm clip and Adam. If the two implementations compute the same
function, their losses, entropies and gradient norms agree to float32 rounding until an
``argmax`` of a latent flips on one side (rounding makes that inevitable after some tens of
updates, and the trajectories part from there).

  python tools/parity.py check-update --task=gym_CartPole-v1 --updates=100 \\
      --deter=64 --units=64 --layers=1 --stoch=16 --classes=16 --mlp_layers=1 --mlp_units=64 --out=DIR

The batch is ``batch_size`` windows of ``batch_length`` steps from one stream of a uniformly
random policy on the gymnasium task (episode boundaries and terminations inside windows, the
first step of every window marked ``is_first`` as both replays do). ``DIR/update_check.json``
gets every update's values of both sides and the first update at which any metric differs by
more than ``--rtol``; the command fails when that happens before update ``--agree``.

With ``--own_init`` each side draws its own initial parameters instead, once per seed of
``--init_seeds``, on the same batch with the same deterministic latents: the only difference left
is the initialisation, and ``DIR/own_init.json`` compares the two sides' seed means (Welch's t)
at a few updates.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib
import json
import pathlib
import subprocess
import sys
from collections.abc import Sequence

import numpy as np

REFERENCE_SCRIPT = pathlib.Path(__file__).resolve().parent / "parity_reference_update.py"

# dreamer_tf's metric name -> the reference's, for every value compared.
WORLD_MODEL_METRICS = (
  ("model_loss", "model_loss_mean"),
  ("vector_loss", "vector_loss_mean"),
  ("reward_loss", "reward_loss_mean"),
  ("cont_loss", "cont_loss_mean"),
  ("dyn_loss", "dyn_loss_mean"),
  ("rep_loss", "rep_loss_mean"),
  ("prior_ent", "prior_ent_mean"),
  ("post_ent", "post_ent_mean"),
  ("model_grad_norm", "model_opt_grad_norm"),
)
# With --full: the actor and critic update in imagination (reference key prefix extr_: its task reward).
BEHAVIOR_METRICS = (
  ("imag_reward", "extr_reward_mean"),
  ("imag_return", "extr_return_raw_mean"),
  ("advantage", "adv_mean"),
  ("actor_entropy", "policy_entropy_mean"),
  ("actor_loss", "actor_opt_loss"),
  ("actor_grad_norm", "actor_opt_grad_norm"),
  ("critic_value", "extr_critic_mean"),
  ("critic_loss", "extr_critic_critic_opt_loss"),
  ("critic_grad_norm", "extr_critic_critic_opt_grad_norm"),
)
METRICS = WORLD_MODEL_METRICS + BEHAVIOR_METRICS


def write_result(path: pathlib.Path, result: dict) -> pathlib.Path:
  """Writes a check's result as compact JSON; per-update ``runs`` (the bulk) go gzipped beside it.

  ``path`` gets everything but ``runs`` (a few KB, readable in a diff); ``runs`` go to
  ``<path stem>.runs.json.gz``, named in the summary as ``runs_file``.
  """
  result = dict(result)
  runs = result.pop("runs", None)
  if runs is not None:
    runs_path = path.with_name(path.stem + ".runs.json.gz")
    runs_path.write_bytes(gzip.compress(json.dumps(runs, separators=(",", ":")).encode(), mtime=0))
    result["runs_file"] = runs_path.name
  path.write_text(json.dumps(result, separators=(",", ":")) + "\n")
  return path


def collect_batch(env_id: str, batch_size: int, batch_length: int, seed: int) -> tuple[dict, int]:
  """``batch_size`` windows from one stream of a seeded random policy; returns ``(batch, actions)``
  with ``actions`` the number of discrete actions (0 for a continuous action space).

  The step format of both replays: the action taken at each step, the reward received on arriving
  there (0 on a first step), ``is_terminal`` only on a termination. Discrete actions are indices
  here (dreamer_tf's replay); :func:`reference_batch` makes them one-hot for the reference.
  """
  import gymnasium

  env = gymnasium.make(env_id)
  space = env.action_space
  discrete = isinstance(space, gymnasium.spaces.Discrete)
  rng = np.random.default_rng(seed)

  def random_action():
    if discrete:
      return int(rng.integers(space.n))
    return rng.uniform(-1.0, 1.0, space.shape).astype(np.float32)  # Normalised, as both agents act.

  def env_action(action):
    if discrete:
      return action
    return space.low + (action + 1.0) / 2.0 * (space.high - space.low)

  steps, done = [], True
  length = batch_size * batch_length + batch_length
  while len(steps) < length:
    if done:
      obs, _ = env.reset(seed=int(rng.integers(2**31)))
      reward, done, first, terminal = 0.0, False, True, False
    else:
      obs, reward, terminal, truncated, _ = env.step(env_action(steps[-1]["action"]))
      done, first = bool(terminal or truncated), False
    steps.append(
      dict(vector=obs, action=random_action(), reward=reward, is_first=first, is_last=done, is_terminal=terminal)
    )
  env.close()
  starts = rng.choice(len(steps) - batch_length + 1, batch_size, replace=False)
  batch = {k: np.stack([np.stack([steps[s + t][k] for t in range(batch_length)]) for s in starts]) for k in steps[0]}
  batch["vector"] = batch["vector"].astype(np.float32)
  batch["reward"] = batch["reward"].astype(np.float32)
  batch["is_first"][:, 0] = True
  if not batch["is_terminal"].any():
    print("note: no termination inside the batch; the continue head sees only targets of 1", flush=True)
  return batch, int(space.n) if discrete else 0


def reference_batch(batch: dict, actions: int) -> dict:
  """The batch as the reference stores it: discrete actions one-hot over ``actions``."""
  out = dict(batch)
  if actions:
    out["action"] = np.eye(actions, dtype=np.float32)[batch["action"]]
  return out


def _norm_dense(layer, name: str) -> list:
  """A NormDense: kernel, then LayerNorm scale and offset (the reference's ``norm``), or a bias."""
  if layer.layer_norm is None:
    return [(layer.dense.kernel, f"{name}/kernel"), (layer.dense.bias, f"{name}/bias")]
  norm = layer.layer_norm
  return [(layer.dense.kernel, f"{name}/kernel"), (norm.gamma, f"{name}/norm/scale"), (norm.beta, f"{name}/norm/bias")]


def _dense(layer, name: str) -> list:
  return [(layer.kernel, f"{name}/kernel"), (layer.bias, f"{name}/bias")]


def _mlp(stack, prefix: str) -> list:
  return [pair for i, layer in enumerate(stack.hidden) for pair in _norm_dense(layer, f"{prefix}/h{i}")]


def _head(head, name: str) -> list:
  """A Head: its MLP trunk, then the reference ``Dist``'s ``out`` (and ``std``) layers."""
  pairs = _mlp(head.trunk, name) + _norm_dense(head.out, f"{name}/dist_out/out")
  if head.std is not None:
    pairs += _norm_dense(head.std, f"{name}/dist_out/std")
  return pairs


def reference_names(world_model) -> list:
  """``(variable, reference name)`` for every trainable variable of dreamer_tf's world model."""
  wm = world_model
  if wm.encoder.cnn is not None or wm.decoder.cnn is not None:
    raise SystemExit("error: check-update compares vector observations only")
  rssm = wm.rssm
  pairs = _mlp(wm.encoder.mlp, "enc/mlp") + [(rssm.initial_deter, "rssm/initial")]
  for name in ("img_in", "gru", "img_out", "obs_out"):
    pairs += _norm_dense(getattr(rssm, name), f"rssm/{name}")
  for name in ("img_stats", "obs_stats"):
    pairs += _dense(getattr(rssm, name), f"rssm/{name}")
  pairs += _mlp(wm.decoder.mlp, "dec/mlp")
  for key, layer in wm.decoder.vector_out.items():
    pairs += _dense(layer, f"dec/mlp/dist_{key}/out")
  pairs += _head(wm.reward_head, "rew") + _head(wm.cont_head, "cont")
  return [(variable, "agent/wm/" + name) for variable, name in pairs]


def reference_names_behavior(actor_critic) -> list:
  """``(variable, reference name)`` for the actor, critic, slow critic and return normaliser."""
  ac = actor_critic
  pairs = _head(ac.actor, "ac/actor") + _head(ac.critic, "critic/net") + _head(ac.slow_critic, "critic/slow")
  pairs += [(ac.retnorm.low, "ac/retnorm_extr/low/value"), (ac.retnorm.high, "ac/retnorm_extr/high/value")]
  return [(variable, "agent/task_behavior/" + name) for variable, name in pairs]


# ``--mix_init`` groups: reference names (after ``agent/wm/``) by prefix; a composite is a union of groups.
INIT_GROUPS = {
  "enc": ("enc/",),
  "initial": ("rssm/initial",),
  "img_in": ("rssm/img_in/",),
  "gru": ("rssm/gru/",),
  "img_out": ("rssm/img_out/",),
  "img_stats": ("rssm/img_stats/",),
  "obs_out": ("rssm/obs_out/",),
  "obs_stats": ("rssm/obs_stats/",),
  "dec": ("dec/",),
  "rew": ("rew/",),
  "cont": ("cont/",),
}
INIT_GROUPS.update(
  seq=INIT_GROUPS["img_in"] + INIT_GROUPS["gru"],
  prior=INIT_GROUPS["img_out"] + INIT_GROUPS["img_stats"],
  post=INIT_GROUPS["obs_out"] + INIT_GROUPS["obs_stats"],
  rssm=("rssm/",),
  heads=INIT_GROUPS["dec"] + INIT_GROUPS["rew"] + INIT_GROUPS["cont"],
  all=("",),
)


def init_group_names(groups: Sequence[str], names: Sequence[str]) -> set[str]:
  """The reference names (``agent/wm/...``) of ``names`` in any of ``groups`` (keys of :data:`INIT_GROUPS`)."""
  unknown = [g for g in groups if g not in INIT_GROUPS]
  if unknown:
    raise SystemExit(f"error: unknown --mix_init group(s) {unknown}; known: {', '.join(INIT_GROUPS)}")
  prefixes = tuple("agent/wm/" + p for g in groups for p in INIT_GROUPS[g])
  return {n for n in names if n.startswith(prefixes)}


def shuffled(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """The same values in a random order (a permutation of all the tensor's entries): no structure left."""
  return rng.permutation(np.asarray(value).ravel()).reshape(np.shape(value))


def _mode_sample(self, seed):
  """Replaces ``OneHotCategorical.sample`` in the check: the straight-through mode."""
  del seed
  return self.mode()


def _mean_sample(self, seed):
  """Replaces ``BoundedNormal.sample`` in the check: the mean (its gradient reaches the actor)."""
  del seed
  return self.loc


def run_ours(
  args,
  batch: dict,
  actions: int,
  params: dict | None,
  init_seed: int = 0,
  sample_seed: int | None = None,
  keep_own: Sequence[str] = (),
  shuffle: bool = False,
) -> list[dict]:
  """dreamer_tf's world-model updates from the reference's parameters (or, with ``params=None``, from
  its own initialisation drawn with ``init_seed``), latents as modes; with ``sample_seed`` its own
  samplers instead, its train step's random stream seeded with ``sample_seed``.

  ``keep_own``: reference names that keep dreamer_tf's own draws (``init_seed``) although ``params`` is
  given (``--mix_init``). ``shuffle``: every tensor that keeps its own draw is permuted within itself
  (``numpy`` generator seeded ``init_seed``), the same values without their structure."""
  importlib.import_module("dreamer_tf")  # First: its quiet start filters TensorFlow's start-up noise.
  import tensorflow as tf
  from tf_agents.specs import tensor_spec

  from dreamer_tf.agent import distributions
  from dreamer_tf.agent.dreamer_agent import DreamerAgent, time_step_spec_from
  from dreamer_tf.config import load_config

  overrides = [
    f"model.deter={args.deter}",
    f"model.units={args.units}",
    f"model.layers={args.layers}",
    f"model.stoch={args.stoch}",
    f"model.classes={args.classes}",
    f"model.vector_layers={args.mlp_layers}",
    f"model.vector_units={args.mlp_units}",
    f"replay.batch_size={args.batch_size}",
    f"replay.batch_length={args.batch_length}",
  ]
  config = load_config(args.task, [], overrides)
  obs_spec = {"vector": tf.TensorSpec(batch["vector"].shape[2:], tf.float32, "vector")}
  if actions:
    action_spec = tensor_spec.BoundedTensorSpec([], tf.int32, 0, actions - 1, "action")
  else:
    action_spec = tensor_spec.BoundedTensorSpec(batch["action"].shape[2:], tf.float32, -1.0, 1.0, "action")
  tf.keras.utils.set_random_seed(init_seed)
  agent_seed = args.seed if sample_seed is None else sample_seed
  agent = DreamerAgent(time_step_spec_from(obs_spec), action_spec, config, seed=agent_seed)
  wm, ac = agent.world_model, agent.actor_critic
  pairs = reference_names(wm) + (reference_names_behavior(ac) if args.full else [])
  trained = wm.trainable_variables
  if args.full:
    trained = trained + ac.actor.trainable_variables + ac.critic.trainable_variables
  unmapped = {v.ref() for v in trained} - {v.ref() for v, _ in pairs}
  if unmapped:
    raise SystemExit(f"error: {len(unmapped)} trained variables have no reference name; extend reference_names")
  keep_own = set(keep_own)
  shuffle_rng = np.random.default_rng(init_seed)
  for variable, name in pairs:
    own = params is None or name in keep_own
    if own:
      if shuffle:
        variable.assign(shuffled(variable.numpy(), shuffle_rng))
      continue
    if name not in params or params[name].shape != tuple(variable.shape):
      got = params[name].shape if name in params else "missing"
      raise SystemExit(f"error: reference parameter {name} is {got}, dreamer_tf's is {tuple(variable.shape)}")
    variable.assign(params[name])

  size = len(batch["reward"]) // args.batches  # Update i trains on batch i mod --batches.
  experiences = []
  for i in range(args.batches):
    part = {k: v[i * size : (i + 1) * size] for k, v in batch.items()}
    experience = {k: tf.constant(v) for k, v in part.items() if k != "vector"}
    experience["obs"] = {"vector": tf.constant(part["vector"])}
    experiences.append(experience)
  model_vars = wm.trainable_variables

  compile_xla = bool(getattr(args, "jit_compile", False))  # As the training loop's --jit_compile does.

  @tf.function(jit_compile=compile_xla)
  def full_update(experience):  # DreamerAgent._train: world model, then actor and critic in imagination.
    return agent._train(experience).extra

  @tf.function(jit_compile=compile_xla)
  def update(experience):
    data = agent.preprocess(experience)
    seed = agent._rng.make_seeds(1)[:, 0]  # A fresh seed per update, as DreamerAgent._train draws them.
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(model_vars)
      loss, _, metrics = wm.loss(data, seed)
    metrics["model_grad_norm"], _ = agent._apply(0, tape, loss, model_vars)
    return metrics

  samplers = (distributions.OneHotCategorical.sample, distributions.BoundedNormal.sample)
  if sample_seed is None:
    distributions.OneHotCategorical.sample = _mode_sample
    distributions.BoundedNormal.sample = _mean_sample
  try:
    step = full_update if args.full else update
    return [{k: float(v) for k, v in step(experiences[i % args.batches]).items()} for i in range(args.updates)]
  finally:
    distributions.OneHotCategorical.sample, distributions.BoundedNormal.sample = samplers


def compare(ours: list[dict], reference: list[dict], rtol: float, atol: float) -> dict:
  """Per update and metric ``[ours, reference]``, and the first update where any differs by more
  than ``rtol * |reference| + atol`` (``atol`` for values that are rounding noise around 0, such as
  the first imagined rewards and values of zero-initialised heads)."""
  updates, first = [], None
  for i, (a, b) in enumerate(zip(ours, reference)):
    row = {name: [a[name], b[ref]] for name, ref in METRICS if name in a and ref in b}
    if first is None and any(abs(x - y) > rtol * abs(y) + atol for x, y in row.values()):
      first = i
    updates.append(row)
  return {"updates": updates, "first_difference": first}


SIZE_ARGS = ("deter", "units", "layers", "stoch", "classes", "mlp_layers", "mlp_units")
SETTINGS = ("batch_size", "batch_length", "batches", "seed", "updates", "agree", "rtol", "atol", "full", "jit_compile")


def reference_updates(
  args, python: pathlib.Path, env: dict, seed: int, actions: int, sample_seeds: Sequence[int] = ()
) -> tuple[dict, list | dict]:
  """Runs the reference side once (its own initialisation for ``seed``); returns its parameters and rows
  (with ``sample_seeds``: its own samplers, ``{seed: rows}`` of one run per sample seed).

  With ``args.reference_cache`` (a folder) a run with the same settings, batch and seeds is read from
  there instead of run again, and a new run is stored there (``--mix_init``'s groups share them)."""
  name = "reference_sampled.json" if sample_seeds else "reference_updates.json"
  cache = getattr(args, "reference_cache", None)
  if cache is not None:
    key = dict(
      script=hashlib.sha1(REFERENCE_SCRIPT.read_bytes()).hexdigest(),
      batch=hashlib.sha1((args.out / "batch.npz").read_bytes()).hexdigest(),
      sizes=[getattr(args, k) for k in SIZE_ARGS],
      updates=args.updates,
      batches=args.batches,
      full=bool(args.full),
      discrete=bool(actions),
      seed=seed,
      sample_seeds=list(sample_seeds),
    )
    cached = pathlib.Path(cache) / hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    if (cached / name).exists():
      print(f"reference seed {seed}: from {cached}", flush=True)
      return dict(np.load(cached / "reference_params.npz")), json.loads((cached / name).read_text())
  cmd = [str(python), str(REFERENCE_SCRIPT), f"--batch={args.out / 'batch.npz'}", f"--out={args.out}"]
  cmd += [f"--updates={args.updates}", f"--seed={seed}", *(f"--{k}={getattr(args, k)}" for k in SIZE_ARGS)]
  cmd += ["--discrete"] if actions else []
  cmd += ["--full"] if args.full else []
  cmd += [f"--sample_seeds={','.join(map(str, sample_seeds))}"] if sample_seeds else []
  cmd += [f"--batches={args.batches}"]
  log = args.out / "reference.log"
  with open(log, "w") as f:
    code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
  if code:
    tail = log.read_text().strip().splitlines()[-1:]
    raise SystemExit(f"error: the reference side failed ({tail[0] if tail else code}); see {log}")
  params = dict(np.load(args.out / "reference_params.npz"))
  rows = json.loads((args.out / name).read_text())
  if cache is not None:
    cached.mkdir(parents=True, exist_ok=True)
    np.savez(cached / "reference_params.npz", **params)
    (cached / "key.json").write_text(json.dumps(key) + "\n")
    (cached / name).write_text(json.dumps(rows))  # Last: its presence marks the entry complete.
  return params, rows


def check_update(args: argparse.Namespace, reference_python: pathlib.Path, env: dict) -> int:
  """Runs both sides; returns the exit code (1 when they part before ``args.agree`` updates)."""
  args.out.mkdir(parents=True, exist_ok=True)
  windows = args.batch_size * args.batches  # --batches: one stream, different windows per batch.
  batch, actions = collect_batch(args.task[len("gym_") :], windows, args.batch_length, args.seed)
  np.savez(args.out / "batch.npz", **reference_batch(batch, actions))
  if args.own_init or args.sampled:
    return compare_seeds(args, reference_python, env, batch, actions)
  params, reference = reference_updates(args, reference_python, env, args.seed, actions)
  ours = run_ours(args, batch, actions, params)
  result = compare(ours, reference, args.rtol, args.atol)
  first = result["first_difference"]
  passed = first is None or first >= args.agree
  result.update(
    task=args.task,
    settings={k: getattr(args, k) for k in (*SIZE_ARGS, *SETTINGS)},
    terminations_in_batch=int(batch["is_terminal"].sum()),
    passed=passed,
  )
  write_result(args.out / "update_check.json", result)
  shown = {0, 1, min(args.agree, args.updates) - 1, args.updates - 1}
  shown = sorted(shown | ({first} if first is not None else set()))
  for i in shown:
    row = result["updates"][i]
    print(f"update {i:4d}  " + "  ".join(f"{k} {x:.6g}/{y:.6g}" for k, (x, y) in row.items()), flush=True)
  where = "never" if first is None else f"first at update {first}"
  verdict = "agree" if passed else "DIFFER"
  print(f"dreamer_tf / reference {verdict}: a difference above rtol {args.rtol:g} + atol {args.atol:g} {where}", end="")
  print(f" (required: not before update {args.agree})")
  print(f"wrote {args.out / 'update_check.json'}")
  return 0 if passed else 1


def _rows(rows: list[dict]) -> list[dict]:
  """The reference's rows under dreamer_tf's metric names."""
  return [{name: row[ref] for name, ref in METRICS if ref in row} for row in rows]


def welch_table(sides: dict, columns: Sequence[tuple]) -> dict:
  """Seed means of both sides and Welch's t of their difference, per metric and column.

  ``sides``: ``{"dreamer_tf": runs, "reference": runs}``, each run a list of per-update metric dicts;
  ``columns``: ``(label, start, stop)``, each seed's value the mean over updates ``start:stop``.
  """
  table = {}
  for name in sides["reference"][0][0]:
    table[name] = {}
    for label, start, stop in columns:
      a, b = (np.array([np.mean([row[name] for row in run[start:stop]]) for run in sides[k]]) for k in SIDE_NAMES)
      table[name][label] = {"dreamer_tf": float(a.mean()), "reference": float(b.mean()), "welch_t": welch_t(a, b)}
  return table


def welch_t(a: Sequence[float], b: Sequence[float]) -> float:
  """Welch's t of ``mean(a) - mean(b)`` (0 for equal means without spread, nan for a gap without spread)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  spread = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if min(len(a), len(b)) > 1 else 0.0
  gap = float(a.mean() - b.mean())
  return gap / spread if spread > 0 else (0.0 if gap == 0 else float("nan"))


SIDE_NAMES = ("dreamer_tf", "reference")


def compare_seeds(args, reference_python, env, batch, actions) -> int:
  """``--own_init`` and/or ``--sampled``: one run per seed and side on the same fixed batch.

  ``--own_init``: each side starts from its own initialisation, one per seed in ``--init_seeds``, with
  the same deterministic latents as the exact check, so that the only difference left is how each side
  draws its initial parameters. ``--sampled``: both start from the reference's parameters (``--seed``)
  and draw their latents with their own samplers, one run per seed in ``--sample_seeds``, so that the
  only difference left is the samplers (with ``--own_init`` too: each side's own initialisation and
  samplers, seed by seed; with ``--shared_inits`` instead: both sides from the reference's
  initialisation for each seed, each with its own sampler). The seed means are compared with Welch's
  t (no pass or fail: a report), at single updates with ``--own_init`` alone, as means over quarters
  of the updates with ``--sampled``.
  """
  seeds = args.sample_seeds if args.sampled and not args.own_init else args.init_seeds
  sides = {"dreamer_tf": [], "reference": []}
  if args.own_init:
    for seed in seeds:
      sampler = seed + args.sample_offset if args.sampled else None  # --sample_offset: apart from the init seed
      _, rows = reference_updates(args, reference_python, env, seed, actions, [sampler] if args.sampled else ())
      sides["reference"].append(_rows(rows[str(sampler)] if args.sampled else rows))
      own = dict(init_seed=seed, sample_seed=sampler, shuffle=args.shuffle_init)
      sides["dreamer_tf"].append(run_ours(args, batch, actions, None, **own))
  elif args.shared_inits or args.mix_init:  # --sampled from the reference's initialisation for each seed.
    for seed in seeds:
      params, runs = reference_updates(args, reference_python, env, seed, actions, [seed])
      sides["reference"].append(_rows(runs[str(seed)]))
      # --mix_init: dreamer_tf keeps its own draws for seed s in those groups (with --shuffle_init shuffled).
      weights = [name for name in params if "_opt/" not in name]  # Not the optimizers' step counters.
      keep = init_group_names(args.mix_init, weights) if args.mix_init else ()
      if args.mix_init:
        print(f"seed {seed}: dreamer_tf's own draws for {len(keep)} of {len(weights)} tensors", flush=True)
      own = dict(init_seed=seed, keep_own=keep, shuffle=args.shuffle_init)
      sides["dreamer_tf"].append(run_ours(args, batch, actions, params, sample_seed=seed, **own))
  else:  # --sampled from the same parameters: the reference runs every sample seed in one process.
    params, runs = reference_updates(args, reference_python, env, args.seed, actions, seeds)
    for seed in seeds:
      sides["reference"].append(_rows(runs[str(seed)]))
      sides["dreamer_tf"].append(run_ours(args, batch, actions, params, sample_seed=seed))
  if args.sampled:
    edges = np.linspace(0, args.updates, 5).astype(int)
    columns = [(f"{a}-{b}", a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
  else:
    columns = [(i, i, i + 1) for i in sorted({0, args.updates // 4, args.updates // 2, args.updates - 1})]
  table = welch_table(sides, columns)
  modes = (
    ("own_init", args.own_init),
    ("shared_inits", args.shared_inits),
    ("mix_init", bool(args.mix_init)),
    ("shuffled", args.shuffle_init),
    ("sampled", args.sampled),
  )
  mode = "+".join(m for m, on in modes if on)
  result = dict(task=args.task, mode=mode, seeds=list(seeds), updates=args.updates, at_updates=table, runs=sides)
  names = (*SIZE_ARGS, "batch_size", "batch_length", "batches", "seed", "full", "jit_compile", "sample_offset")
  names += ("mix_init", "shuffle_init")
  result["settings"] = {k: getattr(args, k) for k in names}
  path = args.out / ("own_init.json" if mode == "own_init" else f"{mode.replace('+', '_')}.json")
  write_result(path, result)
  for name, cells in table.items():
    text = "  ".join(
      f"{i}: {c['dreamer_tf']:.4g}/{c['reference']:.4g} (t {c['welch_t']:+.2f})" for i, c in cells.items()
    )
    print(f"{name:16s} {text}")
  print(f"seed means dreamer_tf/reference over {len(seeds)} seeds each ({mode}); wrote {path}")
  return 0


def merge_results(paths: Sequence[pathlib.Path]) -> dict:
  """The seed-mean table (Welch's t per quarter of the updates) of several ``--sampled`` results pooled.

  ``paths``: summary JSONs written by :func:`compare_seeds` with the same settings and updates (e.g.
  ``--init_seeds`` 1-10 and 11-20 run apart), their runs read from the gzipped files beside them.
  """
  sides, seeds, updates = {k: [] for k in SIDE_NAMES}, [], None
  for path in map(pathlib.Path, paths):
    summary = json.loads(path.read_text())
    if updates not in (None, summary["updates"]):
      raise SystemExit(f"error: {path} has {summary['updates']} updates, the others {updates}")
    updates = summary["updates"]
    runs = json.loads(gzip.decompress((path.parent / summary["runs_file"]).read_bytes()))
    for k in SIDE_NAMES:
      sides[k] += runs[k]
    seeds += summary["seeds"]
  edges = np.linspace(0, updates, 5).astype(int)
  columns = [(f"{a}-{b}", a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]
  return dict(seeds=seeds, updates=updates, at_updates=welch_table(sides, columns))


if __name__ == "__main__":
  sys.exit("run it as: python tools/parity.py check-update ...")
