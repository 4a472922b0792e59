"""Tests for tools/parity.py: the same settings reach both sides, and a tiny side-by-side run writes the JSON."""

import gzip
import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dreamer_tf.main import resolve_config
from dreamer_tf.replay import prefill_steps

_TOOLS = pathlib.Path(__file__).resolve().parents[2] / "tools"
_spec = importlib.util.spec_from_file_location("dreamer_tools_parity", _TOOLS / "parity.py")
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)

_TINY = [
  "--task=gym_CartPole-v1",
  "--seeds=0",
  "--updates=4",
  "--deter=16",
  "--units=16",
  "--layers=1",
  "--stoch=4",
  "--classes=4",
  "--mlp_layers=1",
  "--mlp_units=16",
  "--batch_size=2",
  "--batch_length=8",
  "--train_ratio=16",
  "--envs=1",
  "--return_bins=2",
  "--update_bins=2",
  "--early_updates=2",
  "--early_bins=2",
  "--parallel=1",
]


def _flag(command, name):
  return command[command.index(name) + 1]


def test_both_sides_get_the_same_settings(tmp_path):
  args = parity.parse_args(["run", *_TINY, "--task=dmcproprio_cartpole_balance", "--envs=4", f"--out={tmp_path}"])
  assert args.repeat == 2
  ours = parity.ours_command(args, 3, tmp_path / "ours")
  ref = parity.reference_command(args, 3, tmp_path / "ref")
  overrides = dict(c[len("--override=") :].split("=", 1) for c in ours if c.startswith("--override="))
  assert overrides["model.deter"] == _flag(ref, "--rssm.deter") == "16"
  assert overrides["model.units"] == _flag(ref, r"--.*\.units") == "16"
  assert overrides["model.layers"] == _flag(ref, r"--.*\.layers") == "1"
  assert overrides["model.stoch"] == _flag(ref, "--rssm.stoch") == "4"
  assert overrides["model.classes"] == _flag(ref, "--rssm.classes") == "4"
  assert (
    overrides["model.vector_units"] == _flag(ref, "--encoder.mlp_units") == _flag(ref, "--decoder.mlp_units") == "16"
  )
  assert overrides["model.vector_layers"] == _flag(ref, "--encoder.mlp_layers") == _flag(ref, "--decoder.mlp_layers")
  assert overrides["replay.batch_size"] == _flag(ref, "--batch_size") == "2"
  assert overrides["replay.batch_length"] == _flag(ref, "--batch_length") == "8"
  assert float(overrides["run.train_ratio"]) == float(_flag(ref, "--run.train_ratio")) == 16.0
  assert overrides["env.dmc.repeat"] == _flag(ref, "--env.dmc.repeat") == "2"
  assert f"--envs={_flag(ref, '--envs.amount')}" in ours
  assert f"--seed={_flag(ref, '--seed')}" in ours
  assert f"--steps={_flag(ref, '--run.steps')}" in ours
  assert overrides["run.train_start"] == str(parity.prefill_windows(args))  # the reference's random prefill
  assert float(overrides["run.log_every_secs"]) < 1e-3  # A metrics row after every agent step.
  assert _flag(ref, "--task") == "dmc_cartpole_balance"
  assert _flag(ref, "--jax.platform") == "cpu" and _flag(ref, "--jax.precision") == "float32"


def test_steps_cover_prefill_and_updates():
  args = parity.parse_args(["run", "--task=dmcproprio_cartpole_balance", "--updates=500", "--out=/tmp/x"])
  # Replay holds one batch of 16 x 64 windows after 4 x (256 + 63) steps: 1,300 in chunks of 100.
  assert parity.prefill_steps(args) == 1300
  # dreamer_tf's own rule prefills exactly that many steps from the window count the tool passes.
  config = resolve_config(
    "dmcproprio_cartpole_balance", [], ["run.envs=4", f"run.train_start={parity.prefill_windows(args)}"]
  )
  assert prefill_steps(config) == 1300
  assert parity.total_steps(args) == 1300 + 1000


def test_unsupported_task_and_bad_seeds_are_refused(capsys):
  with pytest.raises(SystemExit, match="no reference adapter"):
    parity.parse_args(["run", "--task=atari_pong", "--updates=1", "--out=/tmp/x"])
  with pytest.raises(SystemExit):
    parity.parse_args(["run", "--task=gym_CartPole-v1", "--updates=1", "--seeds=a,b", "--out=/tmp/x"])
  assert "not a list of integers" in capsys.readouterr().err


def test_the_tool_names_the_parity_extra_when_a_module_is_missing():
  # Every module a command needs is in setup.py's `parity` extra, and the start-up check names that extra.
  setup = (_TOOLS.parent / "setup.py").read_text()
  extra = setup[setup.index("PARITY = [") : setup.index("]", setup.index("PARITY = ["))]
  for modules in parity.TOOL_MODULES.values():
    assert all(f'"{name}' in extra for name in modules)
  assert '"parity": PARITY' in setup
  parity.check_modules(parity.TOOL_MODULES["report"])  # Installed here (the test extra includes it).
  with pytest.raises(SystemExit, match=r"needs not_a_module_of_dreamer_tf, .*pip install -e '\.\[parity\]'"):
    parity.check_modules(["matplotlib", "not_a_module_of_dreamer_tf"])


# What `pip install` printed into the reference venv (setup-reference's second install, 2026-12-05).
_PIP_CONFLICTS = """\
ERROR: pip's dependency resolver does not currently take into account all the packages that are installed. \
This behaviour is the source of the following dependency conflicts.
dreamerv3 1.5.0 requires crafter, which is not installed.
dreamerv3 1.5.0 requires gym==0.19.0, which is not installed.
dreamerv3 1.5.0 requires tensorflow-cpu, which is not installed.
dreamerv3 1.5.0 requires tensorflow_probability, which is not installed."""


def test_setup_reference_leaves_out_only_the_expected_pip_conflicts():
  shown, expected = parity.split_pip_output("WARNING: a warning\n" + _PIP_CONFLICTS)
  assert shown == ["WARNING: a warning"]
  assert expected == ["crafter", "gym", "tensorflow-cpu", "tensorflow_probability"]
  # Any other conflict is shown in full.
  other = _PIP_CONFLICTS + "\ndreamerv3 1.5.0 requires jax==0.3, which is not installed."
  shown, expected = parity.split_pip_output(other)
  assert shown == other.splitlines() and expected == []
  assert parity.split_pip_output("done") == (["done"], [])


def test_update_counts_of_both_sides():
  # GoalLine settings: 2,000 agent steps after the prefill at 8 updates per step.
  goal_line = ["--updates=16000", "--envs=1", "--batch_size=4", "--batch_length=16", "--train_ratio=512"]
  args = parity.parse_args(["run", "--task=gym_CartPole-v1", *goal_line, "--out=/tmp/x"])
  assert parity.total_steps(args) - parity.prefill_steps(args) == 2000
  # The reference's first step after the prefill trains once, every later one 8 times.
  assert parity.expected_updates(args) == {"dreamer_tf": 16000, "reference": 1 + 8 * 1999}


def test_update_counts_match_the_reference_counter():
  """The count of :func:`parity.expected_updates` is what the reference's own ``embodied.when.Ratio`` gives."""
  reason = parity.reference_missing(parity.DEFAULT_VENV)
  if reason:
    pytest.skip(f"reference side not run: {reason}")
  for ratio, batch in ((512, (4, 16)), (32, (16, 64)), (100, (3, 7))):
    args = parity.parse_args(
      ["run", "--task=gym_CartPole-v1", "--updates=300", f"--train_ratio={ratio}", "--envs=1", "--out=/tmp/x"]
      + [f"--batch_size={batch[0]}", f"--batch_length={batch[1]}"]
    )
    steps = parity.total_steps(args) - parity.prefill_steps(args)
    per_step = f"{float(ratio)!r} / {batch[0] * batch[1]}"
    code = f"import dreamerv3, embodied; r = embodied.when.Ratio({per_step}); print(sum(r(s) for s in range({steps})))"
    python = parity.DEFAULT_VENV / "bin" / "python"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=parity._ref_env())
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) == parity.expected_updates(args)["reference"]


def test_report_merges_the_seeds_already_run_with_the_same_settings(tmp_path, capsys):
  argv = ["run", *_TINY, f"--out={tmp_path}"]
  args = parity.parse_args(argv)  # --seeds=0
  for seed in (1, 2):
    logdir = parity.run_dir(args, parity.OURS, seed)
    logdir.mkdir(parents=True)
    (logdir / "command.txt").write_text(" ".join(parity.ours_command(args, seed, logdir)))
  other = parity.parse_args([*argv, "--deter=8"])
  logdir = parity.run_dir(args, parity.REFERENCE, 3)
  logdir.mkdir(parents=True)
  (logdir / "command.txt").write_text(" ".join(parity.reference_command(other, 3, logdir)))
  assert parity.report_seeds(args) == [0, 1, 2]
  assert f"{logdir} ran with other settings" in capsys.readouterr().out


def test_the_report_has_finer_bins_over_the_first_updates():
  args = parity.parse_args(["run", "--task=gym_CartPole-v1", "--updates=16000", "--out=/tmp/x"])
  assert (args.early_updates, args.early_bins) == (200, 4)  # 50-update bins where the KL falls fastest
  with pytest.raises(SystemExit):
    parity.parse_args(["run", *_TINY, "--out=/tmp/x", "--early_bins=0"])


def test_each_logged_update_weighs_once_in_the_bins(tmp_path):
  """dreamer_tf logs the mean of the updates since its last row (the first row after compiling holds a
  few, later ones a second's worth); a bin's mean must weigh every update once, as the reference's
  per-update rows do, not every row once (that put the first few updates' high KL at a bin's weight)."""
  args = parity.parse_args(["report", *_TINY, f"--out={tmp_path}"])
  rows = [{"step": 10, "train/updates": 2, "train/model_loss": 3.0, "train/dyn_loss": 1.5}]
  rows.append({"step": 12, "train/updates": 100, "train/model_loss": 1.0, "train/dyn_loss": 1.0})
  (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  run = parity.load_ours(tmp_path, args)
  assert run["updates"] == 100 and len(run["series"]["dynamics loss"]) == 100
  sides = parity._binned_sides({parity.OURS: {0: run}}, lambda r: r["series"]["dynamics loss"], np.array([0, 100.0]))
  assert sides[parity.OURS]["mean"] == [pytest.approx((2 * 1.5 + 98 * 1.0) / 100)]


def test_check_update_modes_that_do_not_go_together_are_refused(capsys):
  base = ["check-update", "--task=gym_CartPole-v1", "--out=/tmp/x"]
  for extra in (["--shared_inits"], ["--shared_inits", "--sampled", "--own_init"], ["--batches=0"]):
    with pytest.raises(SystemExit):
      parity.parse_args([*base, *extra])
  assert "--shared_inits goes with --sampled" in capsys.readouterr().err
  args = parity.parse_args([*base, "--sampled", "--shared_inits", "--batches=5"])
  assert args.sampled and args.shared_inits and args.batches == 5
  for extra, message in (
    (["--mix_init=gru"], "--mix_init goes with --sampled"),
    (["--mix_init=gru", "--sampled", "--shared_inits"], "--mix_init goes with --sampled"),
    (["--shuffle_init", "--sampled"], "--shuffle_init goes with"),
  ):
    with pytest.raises(SystemExit):
      parity.parse_args([*base, *extra])
    assert message in capsys.readouterr().err
  args = parity.parse_args([*base, "--sampled", "--mix_init=gru,post", "--shuffle_init"])
  assert args.mix_init == ["gru", "post"] and args.shuffle_init


def test_welch_t_of_seed_means():
  assert parity_update.welch_t([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.0
  # Means 2 and 4, variances 1 and 4 over 3 seeds each: t = -2 / sqrt(1/3 + 4/3).
  assert parity_update.welch_t([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(-2 / np.sqrt(5 / 3))
  sides = {parity.OURS: {"mean": [2.0], "seeds": {"0": [1.0], "1": [3.0]}}}
  sides[parity.REFERENCE] = {"mean": [2.0], "seeds": {"0": [2.0], "1": [2.0], "2": [None]}}
  assert parity._welch(sides) == [0.0]


def test_replay_stats_show_what_collection_wrote():
  steps = {
    "reward": np.array([0.0, 1.0, 0.5, 0.0, 1.0], np.float32),
    "is_first": np.array([True, False, False, True, False]),
    "is_last": np.array([False, False, True, False, False]),
    "is_terminal": np.array([False, False, True, False, False]),
    "action": np.array([0, 1, 2, 1, 1], np.int32),
  }
  stats = parity.replay_stats(steps, prefill=3)
  assert stats["every_last_followed_by_first"] and stats["terminal_only_on_last"]
  assert stats["reward_on_first_steps"] == [0.0] and stats["action_on_last_steps"] == [2]
  assert stats["prefill_action_fractions"] == [0.5, 0.5] and stats["policy_action_fractions"] == [0.0, 1.0]
  steps["reward"][3] = 0.25  # A reward written on arriving at a reset shows.
  assert parity.replay_stats(steps, prefill=3)["reward_on_first_steps"] == [0.0, 0.25]
  box = dict(steps, action=np.array([[0.5], [-1.5], [1.0], [2.0], [0.0]], np.float32))
  stats = parity.replay_stats(box, prefill=3)
  assert stats["prefill_action_outside_unit_box"] == 0.5 and stats["policy_action_abs_max"] == 2.0


@pytest.mark.slow
def test_tiny_side_by_side_run_writes_the_json(tmp_path):
  out = tmp_path / "parity"
  result = subprocess.run(
    [sys.executable, str(_TOOLS / "parity.py"), "run", *_TINY, "--save_replay", f"--out={out}"],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  report = json.loads((out / "parity.json").read_text())
  ours = report["sides"]["dreamer_tf"]
  assert ours["updates_per_seed"]["0"] >= 4
  assert ours["seconds_per_update"] > 0
  assert ours["params"]["world_model"] > 0
  assert report["returns"]["dreamer_tf"]["mean"]
  assert (out / "returns.png").stat().st_size > 0 and (out / "diagnostics.png").stat().st_size > 0
  assert (out / "diagnostics_early.png").stat().st_size > 0
  assert len(report["diagnostics_early"]["update_bins"]) == 2 and report["diagnostics_early"]["model loss"]
  assert "model loss" in report["diagnostics_early_welch_t"]
  args = parity.parse_args(["replay-stats", *_TINY, "--save_replay", f"--out={out}"])
  assert report["settings"]["expected_updates"] == parity.expected_updates(args)
  written = parity.replay_report(args)  # What collection wrote, read back from each side's saved replay.
  for stats in (runs["0"] for runs in written.values()):
    assert stats["first_step_is_first"] and stats["every_last_followed_by_first"]
    assert stats["reward_on_first_steps"] == [0.0] and stats["steps"] >= parity.prefill_steps(args)
  reason = parity.reference_missing(parity.DEFAULT_VENV)
  if reason:
    assert report["skipped"]["reference"] == reason
    assert f"reference skipped: {reason}" in result.stdout
    pytest.skip(f"reference side not run: {reason}")
  ref = report["sides"]["reference"]
  assert ref["updates_per_seed"]["0"] >= 4
  assert ref["params"] == ours["params"]  # Same size on both sides: the counts match exactly.
  assert report["diagnostics"]["model loss"]["reference"]["mean"]
  assert set(written) == {parity.OURS, parity.REFERENCE}


# --- check-update: the world-model update number for number ---------------------------------------

sys.path.insert(0, str(_TOOLS))
import parity_update  # noqa: E402

_TINY_MODEL = ["--deter=16", "--units=16", "--layers=1", "--stoch=4", "--classes=4", "--mlp_layers=1", "--mlp_units=16"]

# The world-model parameters of the 2023 code for a vector task at one layer, as its agent names
# them (printed from dreamerv3 1.5.0's `agent.varibs`); dreamer_tf's variables must map onto them.
_REFERENCE_WORLD_MODEL = [
  "cont/dist_out/out/bias",
  "cont/dist_out/out/kernel",
  "cont/h0/kernel",
  "cont/h0/norm/bias",
  "cont/h0/norm/scale",
  "dec/mlp/dist_vector/out/bias",
  "dec/mlp/dist_vector/out/kernel",
  "dec/mlp/h0/kernel",
  "dec/mlp/h0/norm/bias",
  "dec/mlp/h0/norm/scale",
  "enc/mlp/h0/kernel",
  "enc/mlp/h0/norm/bias",
  "enc/mlp/h0/norm/scale",
  "rew/dist_out/out/bias",
  "rew/dist_out/out/kernel",
  "rew/h0/kernel",
  "rew/h0/norm/bias",
  "rew/h0/norm/scale",
  "rssm/gru/kernel",
  "rssm/gru/norm/bias",
  "rssm/gru/norm/scale",
  "rssm/img_in/kernel",
  "rssm/img_in/norm/bias",
  "rssm/img_in/norm/scale",
  "rssm/img_out/kernel",
  "rssm/img_out/norm/bias",
  "rssm/img_out/norm/scale",
  "rssm/img_stats/bias",
  "rssm/img_stats/kernel",
  "rssm/initial",
  "rssm/obs_out/kernel",
  "rssm/obs_out/norm/bias",
  "rssm/obs_out/norm/scale",
  "rssm/obs_stats/bias",
  "rssm/obs_stats/kernel",
]


# The actor, critic, slow critic and return normaliser of the same dump (under agent/task_behavior/).
_REFERENCE_BEHAVIOR = [
  "ac/actor/dist_out/out/bias",
  "ac/actor/dist_out/out/kernel",
  "ac/actor/h0/kernel",
  "ac/actor/h0/norm/bias",
  "ac/actor/h0/norm/scale",
  "ac/retnorm_extr/high/value",
  "ac/retnorm_extr/low/value",
  "critic/net/dist_out/out/bias",
  "critic/net/dist_out/out/kernel",
  "critic/net/h0/kernel",
  "critic/net/h0/norm/bias",
  "critic/net/h0/norm/scale",
  "critic/slow/dist_out/out/bias",
  "critic/slow/dist_out/out/kernel",
  "critic/slow/h0/kernel",
  "critic/slow/h0/norm/bias",
  "critic/slow/h0/norm/scale",
]


def _tiny_agent(layers=1):
  import tensorflow as tf
  from tf_agents.specs import tensor_spec

  from dreamer_tf.agent.dreamer_agent import DreamerAgent, time_step_spec_from

  overrides = ["model.deter=16", "model.units=16", f"model.layers={layers}", "model.stoch=4", "model.classes=4"]
  overrides += ["model.vector_layers=1", "model.vector_units=16"]
  config = resolve_config("gym_CartPole-v1", [], overrides)
  obs = {"vector": tf.TensorSpec([4], tf.float32, "vector")}
  action = tensor_spec.BoundedTensorSpec([], tf.int32, 0, 1, "action")
  return DreamerAgent(time_step_spec_from(obs), action, config)


def test_every_world_model_variable_has_its_reference_name():
  agent = _tiny_agent()
  wm = agent.world_model
  pairs = parity_update.reference_names(wm)
  names = [name for _, name in pairs]
  assert sorted(names) == sorted("agent/wm/" + n for n in _REFERENCE_WORLD_MODEL)
  assert {v.ref() for v, _ in pairs} == {v.ref() for v in wm.trainable_variables}
  shapes = {name: tuple(v.shape) for v, name in pairs}
  assert shapes["agent/wm/rssm/gru/kernel"] == (16 + 16, 3 * 16)  # [h, x] -> reset, candidate, update
  assert shapes["agent/wm/rssm/obs_out/kernel"] == (16 + 16, 16)  # [h, embed]
  assert shapes["agent/wm/cont/h0/kernel"] == (16 + 4 * 4, 16)  # [h, z]
  # Deeper heads and trunks map layer by layer.
  deeper = [name for _, name in parity_update.reference_names(_tiny_agent(layers=2).world_model)]
  assert {"agent/wm/cont/h1/kernel", "agent/wm/rew/h1/norm/scale"} <= set(deeper)
  # check-update --full: the actor, critic, slow critic and return normaliser too.
  ac = agent.actor_critic
  behavior = parity_update.reference_names_behavior(ac)
  assert sorted(name for _, name in behavior) == sorted("agent/task_behavior/" + n for n in _REFERENCE_BEHAVIOR)
  trained = ac.actor.trainable_variables + ac.critic.trainable_variables
  assert {v.ref() for v in trained} <= {v.ref() for v, _ in behavior}


def test_mix_init_groups_name_the_reference_tensors_they_keep():
  """``--mix_init=GROUP``: dreamer_tf keeps its own draws for exactly these tensors, the reference's for the rest."""
  names = [name for _, name in parity_update.reference_names(_tiny_agent().world_model)]
  gru = parity_update.init_group_names(["gru"], names)
  assert gru == {"agent/wm/rssm/gru/kernel", "agent/wm/rssm/gru/norm/scale", "agent/wm/rssm/gru/norm/bias"}
  post = parity_update.init_group_names(["post"], names)
  assert post == {n for n in names if "/rssm/obs_out/" in n or "/rssm/obs_stats/" in n} and len(post) == 5
  assert parity_update.init_group_names(["all"], names) == set(names)
  assert parity_update.init_group_names(["initial"], names) == {"agent/wm/rssm/initial"}
  groups = ("enc", "initial", "img_in", "gru", "img_out", "img_stats", "obs_out", "obs_stats", "dec", "rew", "cont")
  parts = [parity_update.init_group_names([g], names) for g in groups]
  assert sum(map(len, parts)) == len(names) and set().union(*parts) == set(names)  # The groups split the model.
  with pytest.raises(SystemExit, match="unknown --mix_init group"):
    parity_update.init_group_names(["grus"], names)


def test_shuffled_keeps_the_values_and_drops_their_order():
  value = np.arange(24, dtype=np.float32).reshape(4, 6)
  out = parity_update.shuffled(value, np.random.default_rng(0))
  assert out.shape == value.shape and out.dtype == value.dtype
  np.testing.assert_array_equal(np.sort(out.ravel()), value.ravel())
  assert not np.array_equal(out, value)


def test_the_fixed_batch_follows_the_replay_step_format():
  batch, actions = parity_update.collect_batch("CartPole-v1", batch_size=4, batch_length=32, seed=0)
  assert actions == 2 and batch["vector"].shape == (4, 32, 4) and batch["action"].shape == (4, 32)
  assert batch["is_first"][:, 0].all()  # Every window starts a sequence, as both replays mark it.
  firsts = batch["is_first"][:, 1:]
  assert firsts.any() and (batch["reward"][:, 1:][firsts] == 0).all()  # Arriving at a reset earns nothing.
  assert batch["is_terminal"].any() and (batch["is_last"] | ~batch["is_terminal"]).all()
  # The step after a last step starts the next episode.
  lasts = batch["is_last"][:, :-1]
  assert (batch["is_first"][:, 1:][lasts]).all()
  reference = parity_update.reference_batch(batch, actions)
  np.testing.assert_array_equal(reference["action"].argmax(-1), batch["action"])


def _check_update(tmp_path, *args):
  """Runs ``parity.py check-update`` on the tiny model (skips without the reference venv); its report."""
  reason = parity.reference_missing(parity.DEFAULT_VENV)
  if reason:
    pytest.skip(f"reference side not run: {reason}")
  out = tmp_path / "check"
  command = [sys.executable, str(_TOOLS / "parity.py"), "check-update", *args, *_TINY_MODEL]
  command += ["--batch_size=4", "--batch_length=16", f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return json.loads((out / "update_check.json").read_text())


def test_check_update_matches_the_reference_number_for_number(tmp_path):
  report = _check_update(tmp_path, "--task=gym_CartPole-v1", "--updates=12", "--agree=12")
  assert report["passed"] and len(report["updates"]) == 12
  first = report["updates"][0]
  assert set(first) == {name for name, _ in parity_update.WORLD_MODEL_METRICS}
  for ours, reference in first.values():
    assert ours == pytest.approx(reference, rel=1e-5)


def test_check_update_on_a_shared_replay_of_several_batches(tmp_path):
  """``--batches=3``: update i of both sides trains on batch i mod 3 of one stream; a side that took
  another batch would differ from update 1 on."""
  report = _check_update(tmp_path, "--task=gym_CartPole-v1", "--updates=6", "--agree=6", "--batches=3")
  assert report["passed"] and report["settings"]["batches"] == 3
  losses = [row["model_loss"][0] for row in report["updates"]]
  assert len(set(losses)) == 6  # Different batches (and parameters) at every update.


def test_full_agent_update_matches_the_reference(tmp_path):
  """World model, then actor and critic in imagination: argmax ties of the near-uniform imagined
  latents flip now and then on one side, so these agree to 1e-2 (the world model still to 1e-5)."""
  report = _check_update(tmp_path, "--full", "--rtol=1e-2", "--task=gym_CartPole-v1", "--updates=8", "--agree=8")
  assert report["passed"] and set(report["updates"][0]) == {name for name, _ in parity_update.METRICS}
  for name, _ in parity_update.WORLD_MODEL_METRICS:
    ours, reference = report["updates"][0][name]
    assert ours == pytest.approx(reference, rel=1e-5)


def test_full_agent_update_matches_the_reference_for_continuous_actions(tmp_path):
  """The Normal actor backpropagated through the imagined dynamics, each Normal sample its mean."""
  report = _check_update(tmp_path, "--full", "--rtol=1e-3", "--task=gym_Pendulum-v1", "--updates=8", "--agree=8")
  assert report["passed"] and report["terminations_in_batch"] == 0  # Pendulum only truncates.
  actor_grad_norm = [row["actor_grad_norm"] for row in report["updates"]]
  assert all(ours > 0 and ours == pytest.approx(reference, rel=1e-3) for ours, reference in actor_grad_norm)


# --- The current generation against the author's current code (check-update --generation=current) ------

import parity_update_current  # noqa: E402

from dreamer_tf.agent import author_names  # noqa: E402

# The author's parameters (danijar/dreamerv3 e3f0224, its `agent.params` without the optimizer's state and
# counters) for a vector observation at check-update --generation=current's default sizes (deter 64,
# units 16, 4 x 4 latents), printed by tools/parity_reference_current_update.py --print_names: with 2
# discrete actions (gym_CartPole-v1), and for gym_Pendulum-v1 (3-dim observation, a continuous actor with
# action/mean and action/stddev).
_AUTHOR_PARAMS = json.loads((pathlib.Path(__file__).parent / "author_current_params.json").read_text())


def _current_args(*argv):
  return parity.parse_args(["check-update", "--generation=current", "--out=/tmp/x", *argv])


def _nature_agent(actions):
  """The nature agent that check-update --generation=current builds for gym_CartPole-v1 (2 discrete
  actions) or gym_Pendulum-v1 (3-dim observation, 1-dim continuous action), without running anything."""
  args = _current_args("--task=gym_CartPole-v1")
  if actions:
    batch = {"vector": np.zeros((4, 16, 4), np.float32), "action": np.zeros((4, 16), np.int64)}
  else:
    batch = {"vector": np.zeros((4, 16, 3), np.float32), "action": np.zeros((4, 16, 1), np.float32)}
  return parity_update_current.build_ours(args, batch, actions)


@pytest.mark.parametrize("actions", [2, 0], ids=["discrete", "continuous"])
def test_every_nature_variable_has_exactly_one_author_name(actions):
  agent = _nature_agent(actions)
  names = author_names.agent_names(agent)
  wm, ac = agent.world_model, agent.actor_critic
  assert len({v.ref() for v in names.values()}) == len(names)  # One name per variable.
  trained = wm.trainable_variables + ac.actor.trainable_variables + ac.critic.trainable_variables
  assert {v.ref() for v in names.values()} == {v.ref() for v in trained + ac.slow_critic.weights} | {
    ac.retnorm.low.ref(),
    ac.retnorm.high.ref(),
  }
  expected = dict(_AUTHOR_PARAMS["discrete" if actions else "continuous"])
  assert sorted(names) == sorted(expected)
  assert {k: tuple(v.shape) for k, v in names.items()} == {k: tuple(v) for k, v in expected.items()}


def test_the_decoder_rows_are_permuted_to_the_authors_order():
  """The author's vector decoder reads concat(stoch, deter), dreamer_tf's concat(deter, stoch): the same
  layer once its first kernel's rows are reordered (author_names.row_orders)."""
  agent = _nature_agent(2)
  wm = agent.world_model
  orders = author_names.row_orders(wm)
  name = "dec/mlp/linear0/kernel"
  rng = np.random.default_rng(0)
  author = rng.normal(size=(wm.rssm.feat_size, 16)).astype(np.float32)
  ours = author_names.to_ours(name, author, orders)
  np.testing.assert_array_equal(author_names.to_author(name, ours, orders), author)
  deter, stoch = rng.normal(size=(3, 64)), rng.normal(size=(3, 16))
  np.testing.assert_allclose(np.concatenate([deter, stoch], -1) @ ours, np.concatenate([stoch, deter], -1) @ author)


def test_check_update_generations_keep_their_own_defaults(capsys):
  old = parity.parse_args(["check-update", "--task=gym_CartPole-v1", "--out=/tmp/x"])
  assert (old.generation, old.updates, old.agree, old.rtol, old.deter, old.units, old.batch_size) == (
    "2023",
    100,
    20,
    1e-4,
    512,
    512,
    16,
  )
  assert old.reference_venv == parity.DEFAULT_VENV.resolve()
  new = _current_args("--task=gym_CartPole-v1")
  assert (new.updates, new.agree, new.rtol, new.deter, new.units, new.stoch, new.classes) == (
    10,
    10,
    1e-2,
    64,
    16,
    4,
    4,
  )
  assert new.reference_venv == parity.DEFAULT_VENV_CURRENT.resolve()
  with pytest.raises(SystemExit):
    parity.parse_args(["check-update", "--task=gym_CartPole-v1", "--out=/tmp/x", "--source=/tmp"])
  with pytest.raises(SystemExit):
    _current_args("--task=gym_CartPole-v1", "--full")
  assert "--generation=current" in capsys.readouterr().err


def test_the_current_code_source_is_checked(tmp_path, capsys):
  assert "not a directory" in parity.current_source_problem(tmp_path / "missing")
  assert "has no dreamerv3/agent.py" in parity.current_source_problem(tmp_path)
  (tmp_path / "dreamerv3").mkdir()
  for name in parity.CURRENT_FILES:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_text("")
  assert "differs from danijar/dreamerv3 e3f0224" in parity.current_source_problem(tmp_path)
  with pytest.raises(SystemExit):
    parity.parse_args(["setup-reference", "--generation=current"])
  assert "needs --source=CHECKOUT" in capsys.readouterr().err


def test_a_dmc_task_needs_dm_control_in_the_current_code_venv(tmp_path):
  assert any(p.startswith("dm_control==") for p in parity.CURRENT_PIP[0])  # setup-reference installs it
  venv = tmp_path / "venv"
  (venv / "bin").mkdir(parents=True)
  python = venv / "bin" / "python"
  python.write_text("#!/bin/sh\nexit 1\n")  # A venv whose Python cannot import dm_control.
  python.chmod(0o755)
  assert parity.current_task_missing(venv, "gym_CartPole-v1") is None  # Not asked for a gymnasium task.
  reason = parity.current_task_missing(venv, "dmcproprio_cartpole_balance")
  assert "needs dm_control" in reason and "setup-reference --generation=current" in reason
  python.write_text("#!/bin/sh\nexit 0\n")
  assert parity.current_task_missing(venv, "dmcproprio_cartpole_balance") is None


def _check_current(tmp_path, *args, code=0):
  """Runs ``check-update --generation=current`` (skips without the current code's venv); its report."""
  reason, _ = parity.current_missing(parity.DEFAULT_VENV_CURRENT, None)
  if reason:
    pytest.skip(f"current code's side not run: {reason}")
  out = tmp_path / "check"
  command = [sys.executable, str(_TOOLS / "parity.py"), "check-update", "--generation=current", *args, f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
  name = "update_check_current_mutated.json" if any(a.startswith("--mutate") for a in args) else None
  return json.loads((out / (name or "update_check_current.json")).read_text())


def test_the_current_check_compiles_our_update_with_xla_when_asked():
  """check-update --generation=current --jit_compile, dreamer_tf's side only (no reference venv needed): from
  its own initial parameters, one update as a plain tf.function and one compiled by XLA. The world model's
  losses agree; the zero-initialised critic predicts exactly 0 in the plain update and XLA's fused
  multiply-add value (about -0.16, section e of docs/parity.md) in the compiled one: the option reaches it."""
  args = _current_args("--task=gym_CartPole-v1", "--updates=1", "--jit_compile")
  assert args.jit_compile
  batch, actions = parity_update.collect_batch("CartPole-v1", args.batch_size, args.batch_length, args.seed)
  agent = parity_update_current.build_ours(args, batch, actions)
  orders = author_names.row_orders(agent.world_model)
  params = {n: author_names.to_author(n, v.numpy(), orders) for n, v in author_names.agent_names(agent).items()}
  compiled, _, _ = parity_update_current.run_ours(args, batch, actions, params, set())
  args.jit_compile = False
  plain, _, _ = parity_update_current.run_ours(args, batch, actions, params, set())
  for name in ("vector_loss", "reward_loss", "cont_loss", "dyn_loss", "critic_loss", "repval_loss", "grad_norm"):
    assert compiled[0][name] == pytest.approx(plain[0][name], rel=1e-4), name
  assert plain[0]["imag_value"] == 0.0
  assert compiled[0]["imag_value"] == pytest.approx(-0.16, abs=0.03)


def test_only_the_reference_side_gets_xla_flags(monkeypatch):
  """The JAX recipe for one thread (--xla_cpu_multi_thread_eigen=false) goes to the reference side only:
  under it TensorFlow's XLA rounds some matmul columns differently (distribute.undo_single_threaded_eigen)."""
  monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
  ours, reference = parity._run_env(1), parity._run_env(1, reference=True)
  assert "XLA_FLAGS" not in ours
  assert reference["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
  assert ours["TF_NUM_INTRAOP_THREADS"] == ours["TF_NUM_INTEROP_THREADS"] == reference["OMP_NUM_THREADS"] == "1"


@pytest.mark.parametrize("task", ["gym_CartPole-v1", "gym_Pendulum-v1"], ids=["discrete", "continuous"])
def test_current_update_matches_the_author_code_number_for_number(tmp_path, task):
  report = _check_current(tmp_path, f"--task={task}", "--updates=4")
  assert report["passed"] and report["first_difference"] is None and report["first_state_difference"] is None
  first = report["updates"][0]
  assert set(first) == {name for name, _, _ in parity_update_current.METRICS}
  for name in ("reward_loss", "cont_loss", "dyn_loss", "rep_loss", "critic_loss", "repval_loss", "loss", "grad_norm"):
    ours, reference = first[name]
    assert ours == pytest.approx(reference, rel=1e-5), name


def test_a_one_line_change_fails_the_current_check_at_update_0(tmp_path):
  """The block GRU's update bias -1 -> 0 (dreamer_tf/agent/networks/block_gru.py, one line)."""
  mutate = "--mutate=dreamer_tf.agent.networks.block_gru.UPDATE_BIAS=0.0"
  report = _check_current(tmp_path, "--task=gym_CartPole-v1", "--updates=2", mutate, code=1)
  assert not report["passed"] and report["first_difference"] == 0 and "grad_norm" in report["differing"]


def test_check_results_are_compact_with_the_runs_gzipped_beside_them(tmp_path):
  runs = {"dreamer_tf": [[{"model_loss": 1.0 / 3.0}] * 400] * 10}
  path = parity_update.write_result(tmp_path / "sampled.json", {"task": "gym_x", "runs": runs})
  summary = json.loads(path.read_text())
  assert summary == {"task": "gym_x", "runs_file": "sampled.runs.json.gz"}
  assert "\n " not in path.read_text() and path.stat().st_size < 100
  assert json.loads(gzip.decompress((tmp_path / summary["runs_file"]).read_bytes())) == runs


def test_seed_runs_written_apart_are_pooled_into_one_table(tmp_path):
  """``merge_results``: two ``--sampled`` results of 2 seeds each give the table of the 4 seeds."""

  def runs(values):
    return [[{"post_ent": v + i / 100} for i in range(8)] for v in values]

  paths = []
  for name, ours, reference in (("a", (1.0, 2.0), (1.0, 1.5)), ("b", (3.0, 4.0), (2.0, 2.5))):
    result = dict(seeds=[name], updates=8, runs={"dreamer_tf": runs(ours), "reference": runs(reference)})
    (tmp_path / name).mkdir()
    paths.append(parity_update.write_result(tmp_path / name / "sampled.json", result))
  merged = parity_update.merge_results(paths)
  assert merged["seeds"] == ["a", "b"] and list(merged["at_updates"]["post_ent"]) == ["0-2", "2-4", "4-6", "6-8"]
  cell = merged["at_updates"]["post_ent"]["0-2"]
  a, b = np.array([1.0, 2.0, 3.0, 4.0]) + 0.005, np.array([1.0, 1.5, 2.0, 2.5]) + 0.005
  assert cell["dreamer_tf"] == pytest.approx(a.mean()) and cell["reference"] == pytest.approx(b.mean())
  assert cell["welch_t"] == pytest.approx(parity_update.welch_t(a, b))


# --- The same with the replay context (check-update --generation=current --context=1) -----------------


def test_the_context_check_gives_both_sides_the_same_stored_latents_and_compares_the_write_back(capsys):
  """--context=1: a batch of 1 + T steps with stored latents, window ids and step ids; the written-back
  latents are compared elementwise, a shape or an id that does not come back fails at update 0."""
  args = _current_args("--task=gym_CartPole-v1", "--context=1")
  assert args.context == 1
  B, L = 4, 17
  batch = {"reward": np.zeros((B, L), np.float32), "is_first": np.zeros((B, L), bool)}
  batch["is_first"][:, 0] = True
  batch["is_first"][3, 1] = True  # This window's episode starts at its first trained step.
  batch = parity_update_current.add_replay_context(batch, 1, args)
  assert batch["latent_deter"].shape == (B, L, 64) and batch["latent_deter"].dtype == np.float32
  assert batch["latent_stoch"].shape == (B, L, 4, 4) and (batch["latent_stoch"].sum(-1) == 1).all()
  assert batch["replay_id"].shape == (B,) and batch["replay_id"].dtype == np.int64
  assert batch["stepid"].shape == (B, L, 20) and batch["stepid"].dtype == np.uint8
  assert parity_update_current.add_replay_context({"reward": batch["reward"]}, 0, args) == {"reward": batch["reward"]}

  rng = np.random.default_rng(1)
  deter, stoch = rng.normal(size=(B, L - 1, 64)).astype(np.float32), batch["latent_stoch"][:, 1:]
  ours = [{"ids": batch["replay_id"], "latent/deter": deter, "latent/stoch": stoch}] * 2
  reference = [{"stepid": batch["stepid"][:, 1:], "dyn/deter": deter, "dyn/stoch": stoch}] * 2
  same = parity_update_current.compare_replay(ours, reference, batch, 1e-2, 1e-6)
  assert same["first_difference"] is None and same["ids_written_back"] and same["context"] == 1
  assert same["windows_starting_from_the_stored_latent"] == 3
  assert same["updates"][0]["deter"] == {"max_abs": 0.0, "outside": 0, "elements": B * 16 * 64}
  later = [reference[0], {**reference[1], "dyn/deter": deter + 0.1}]
  assert parity_update_current.compare_replay(ours, later, batch, 1e-2, 1e-6)["first_difference"] == 1
  shorter = [{**r, "dyn/stoch": r["dyn/stoch"][:, 1:]} for r in reference]
  assert parity_update_current.compare_replay(ours, shorter, batch, 1e-2, 1e-6)["first_difference"] == 0
  offset = [{**r, "stepid": batch["stepid"][:, :-1]} for r in reference]  # Written back at offset 0.
  assert parity_update_current.compare_replay(ours, offset, batch, 1e-2, 1e-6)["first_difference"] == 0
  with pytest.raises(SystemExit):
    parity.parse_args(["check-update", "--task=gym_CartPole-v1", "--out=/tmp/x", "--context=1"])
  assert "--context go with --generation=current" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["gym_CartPole-v1", "gym_Pendulum-v1"], ids=["discrete", "continuous"])
def test_current_update_with_replay_context_matches_the_author_code(tmp_path, task):
  """replay_context 1 on both sides: the same stored latents start the posterior, the same metrics and
  states, and the same latents written back (dreamer_tf's extra["replay"], the author's outs["replay"])."""
  report = _check_current(tmp_path, f"--task={task}", "--context=1", "--updates=2")
  assert report["passed"] and report["first_difference"] is None and report["first_state_difference"] is None
  replay = report["replay"]
  assert report["first_replay_difference"] is None and replay["ids_written_back"] and replay["context"] == 1
  assert replay["windows_starting_from_the_stored_latent"] > 0  # The stored latents were read.
  for row in replay["updates"]:
    assert row["deter"]["outside"] == 0 and row["stoch"]["outside"] == 0 and row["deter"]["max_abs"] < 1e-5
  ours, reference = report["updates"][0]["grad_norm"]
  assert ours == pytest.approx(reference, rel=1e-5)


def test_a_one_line_change_of_the_replay_context_fails_the_current_check_at_update_0(tmp_path):
  """split_context's start action zero (an episode start's) instead of the action at the context step: the
  metrics stay within rtol 1e-2, the written-back latents and the first gradients do not."""
  mutate = "--mutate=context.action=zero"
  report = _check_current(tmp_path, "--task=gym_CartPole-v1", "--context=1", "--updates=1", mutate, code=1)
  assert not report["passed"] and report["first_replay_difference"] == 0
  assert report["replay"]["updates"][0]["deter"]["outside"] > 0


# --- run --generation=current: learning side by side with the author's current code -------------------

_TINY_CURRENT = [
  "--generation=current",
  "--task=gym_CartPole-v1",
  "--seeds=0",
  "--updates=4",
  "--deter=16",
  "--units=16",
  "--stoch=4",
  "--classes=4",
  "--batch_size=2",
  "--batch_length=8",
  "--train_ratio=16",
  "--envs=1",
  "--return_bins=2",
  "--update_bins=2",
  "--early_updates=2",
  "--early_bins=2",
  "--parallel=1",
]


def test_an_ablation_reaches_each_side_after_the_tools_own_settings(tmp_path, capsys):
  for generation in ([], ["--generation=current"]):
    argv = ["run", *_TINY, *generation, f"--out={tmp_path}", "--ours_override=replay.context=0"]
    argv += ["--ours_override=model.units=8", "--reference_flag=replay_context=0", "--reference_flag=--seed=5"]
    if generation:
      argv.remove("--layers=1")  # The 2023 sizes are refused with the current generation.
      argv = [a for a in argv if not a.startswith("--mlp_")]
    args = parity.parse_args(argv)
    args.source = pathlib.Path("/checkout")
    ours = parity.ours_command(args, 1, tmp_path / "ours")
    ref = parity.reference_command(args, 1, tmp_path / "ref")
    overrides = [c[len("--override=") :] for c in ours if c.startswith("--override=")]
    assert "replay.context=0" in overrides and "model.units=8" in overrides
    assert "model.units=16" not in overrides  # The ablation replaces the tool's own value, not beside it.
    assert _flag(ref, "--replay_context") == "0"
    assert ref[len(ref) - 1 - ref[::-1].index("--seed") + 1] == "5"  # The last --seed wins in its parser.
  with pytest.raises(SystemExit):
    parity.parse_args(["run", *_TINY, f"--out={tmp_path}", "--ours_override=replay.context"])
  assert "expected KEY=VALUE" in capsys.readouterr().err


def test_replay_stats_follow_the_continuous_policy_over_training():
  n = 1200
  rng = np.random.default_rng(0)
  raw = np.concatenate([rng.normal(0, 2.0, 600), rng.normal(0, 0.3, 600)])[:, None].astype(np.float32)
  steps = {
    "reward": np.concatenate([np.zeros(600), np.ones(600)]).astype(np.float32),
    "is_first": np.arange(n) % 100 == 0,
    "is_last": np.arange(n) % 100 == 99,
    "is_terminal": np.zeros(n, bool),
    "action": raw,
  }
  windows = parity.replay_stats(steps, prefill=100)["policy_by_500_steps"]
  assert [w["steps"] for w in windows] == [[100, 600], [600, 1100]]  # The 100-step tail is left out.
  early, late = windows
  assert early["action_at_bound"] > 0.5 and late["action_at_bound"] < 0.01  # Clipped, as the env sees them.
  assert early["action_abs_mean"] <= 1.0 and late["action_std"][0] == pytest.approx(0.3, abs=0.03)
  assert early["reward_mean"] < 0.01 and late["reward_mean"] == 1.0  # An action's reward comes with the next step.


def test_current_generation_settings_reach_both_sides(tmp_path):
  goal_line = ["--updates=2400", "--batch_size=4", "--batch_length=16", "--train_ratio=512", "--deter=32"]
  args = parity.parse_args(["run", *_TINY_CURRENT[:2], *goal_line, "--units=32", "--envs=1", f"--out={tmp_path}"])
  args.source = pathlib.Path("/checkout")
  ours = parity.ours_command(args, 1, tmp_path / "ours")
  ref = parity.reference_command(args, 1, tmp_path / "ref")
  assert "--configs=nature" in ours and not any("train_start" in c for c in ours)
  overrides = dict(c[len("--override=") :].split("=", 1) for c in ours if c.startswith("--override="))
  assert not any(k.startswith(("replay.context", "replay.online", "run.prefill")) for k in overrides)  # defaults
  for ours_key, ref_flag in (
    ("model.deter", r"--.*\.rssm.deter"),
    ("model.units", r"--.*\.rssm.hidden"),
    ("model.vector_units", r"--.*\.units"),
    ("model.stoch", r"--.*\.rssm.stoch"),
    ("model.classes", r"--.*\.rssm.classes"),
    ("model.blocks", r"--.*\.rssm.blocks"),
    ("replay.batch_size", "--batch_size"),
    ("replay.batch_length", "--batch_length"),
  ):
    assert overrides[ours_key] == _flag(ref, ref_flag), ours_key
  assert float(overrides["run.train_ratio"]) == float(_flag(ref, "--run.train_ratio")) == 512
  assert _flag(ref, "--jax.compute_dtype") == "float32" and "--source=/checkout" in ref
  steps = parity.total_steps(args)
  assert f"--steps={steps}" in ours and _flag(ref, "--run.steps") == str(steps) and _flag(ref, "--run.envs") == "1"
  # Both sides make their first update once replay holds 4 x 16 windows of 1 + 16 steps: agent step 80.
  config = resolve_config(args.task, ["nature"], [f"{k}={v}" for k, v in overrides.items()] + ["run.envs=1"])
  assert parity.prefill_steps(args) == prefill_steps(config) == 80
  assert steps - 80 == 300  # 2,400 updates at 8 per agent step
  assert parity.expected_updates(args) == {"dreamer_tf": 2400, "reference": 2401}
  with pytest.raises(SystemExit):  # The 2023 layer sizes do not apply to the author's current code.
    parity.parse_args(["run", *_TINY_CURRENT, "--layers=1", f"--out={tmp_path}"])
  with pytest.raises(SystemExit):
    parity.parse_args(["run", *_TINY_CURRENT, "--blocks=3", f"--out={tmp_path}"])


def test_current_reference_rows_map_onto_dreamer_tf_metrics(tmp_path):
  # The launcher's rows: a call's metrics belong to the previous update (the author's train is asynchronous).
  rows = [{"update": 1, "agent_step": 80, "seconds": 40.0}]
  for update in range(2, 14):
    metrics = {"loss/vector": 0.5, "loss/rew": 5.0, "loss/con": 0.7, "loss/dyn": 1.0, "loss/rep": 2.0}
    metrics.update({"loss/repval": 10.0, "loss/value": 3.0, "loss/policy": 0.1, "dyn_ent": 4.0, "rep_ent": 3.0})
    metrics.update({"ent/action": 1.0, "val": 0.2, "retnorm_scale": 1.5})
    rows.append({"update": update, "agent_step": 81, "seconds": 0.02, **metrics, "metrics_of": update - 1})
  (tmp_path / "updates.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  (tmp_path / "episodes.jsonl").write_text(json.dumps({"agent_step": 21, "score": 3.0, "length": 21}) + "\n")
  run = parity._load_reference_current(tmp_path)
  assert run["updates"] == 13 and run["episodes"] == [(21, 3.0)]
  assert run["seconds_per_update"] == pytest.approx(0.02)  # The first 10 calls (compiling) left out.
  assert run["series"]["model loss"][0] == (1.0, pytest.approx(0.5 + 5.0 + 0.7 + 1.0 + 0.1 * 2.0))
  assert run["series"]["image/vector loss"][0][1] == 0.5
  assert run["series"]["replay value loss"][0][1] == pytest.approx(3.0)  # after its scale 0.3, as dreamer_tf's
  assert run["series"]["critic value"][-1] == (12.0, 0.2)
  labels = {label for label, _, _ in parity.METRICS_CURRENT}
  assert labels == set(run["series"]) and "replay value loss" in labels


def test_tiny_current_side_by_side_run_writes_the_json(tmp_path):
  out = tmp_path / "parity"
  result = subprocess.run(
    [sys.executable, str(_TOOLS / "parity.py"), "run", *_TINY_CURRENT, f"--out={out}"],
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  report = json.loads((out / "parity.json").read_text())
  assert report["settings"]["generation"] == "current" and report["settings"]["layers"] is None
  ours = report["sides"]["dreamer_tf"]
  assert ours["updates_per_seed"]["0"] == report["settings"]["expected_updates"]["dreamer_tf"]
  assert ours["params"]["world_model"] > 0 and report["diagnostics"]["replay value loss"]["dreamer_tf"]["mean"]
  assert (out / "returns.png").stat().st_size > 0 and (out / "diagnostics.png").stat().st_size > 0
  reason, _ = parity.current_missing(parity.DEFAULT_VENV_CURRENT, None)
  if reason:
    assert report["skipped"]["reference"] == reason
    assert f"reference skipped: {reason}" in result.stdout
    pytest.skip(f"current code's side not run: {reason}")
  ref = report["sides"]["reference"]
  assert ref["updates_per_seed"]["0"] == report["settings"]["expected_updates"]["reference"]
  for key in ("world_model", "actor", "critic"):  # Same sizes on both sides: the counts match exactly.
    assert ref["params"][key] == ours["params"][key], key
  assert report["diagnostics"]["model loss"]["reference"]["mean"]


def test_env_check_judges_flags_everywhere_and_observations_early_in_each_episode():
  n = 120
  first = np.arange(n) % 60 == 0
  steps = {
    "is_first": first,
    "is_last": np.arange(n) % 60 == 59,
    "is_terminal": np.zeros(n, bool),
    "reward": np.ones(n, np.float32),
    "velocity": np.zeros((n, 2), np.float32),
  }
  copy = lambda: {k: v.copy() for k, v in steps.items()}
  assert parity.compare_env_steps(steps, copy(), judged_steps=50)["agree"]
  late = copy()
  late["velocity"][55] += 0.01  # Step 55 of the first episode: chaos may part the sides there, reported only.
  compared = parity.compare_env_steps(steps, late, judged_steps=50)
  assert compared["agree"] and compared["keys"]["velocity"]["max_abs_diff"] == pytest.approx(0.01)
  early = copy()
  early["velocity"][61] += 0.01  # Step 1 of the second episode.
  assert not parity.compare_env_steps(steps, early, judged_steps=50)["agree"]
  flags = copy()
  flags["is_last"][100] = True  # An episode boundary the other side lacks fails anywhere.
  assert not parity.compare_env_steps(steps, flags, judged_steps=50)["agree"]
  extra = dict(copy(), orientation=np.zeros((n, 1), np.float32))
  compared = parity.compare_env_steps(steps, extra)
  assert not compared["agree"] and compared["keys_only_reference"] == ["orientation"]


def _env_check(tmp_path, generation, steps, code):
  venv = parity.DEFAULT_VENV_CURRENT if generation == "current" else parity.DEFAULT_VENV
  reason, _ = parity.reference_side_missing(generation, venv, "dmcproprio_cartpole_balance")
  if reason:
    pytest.skip(f"reference side not run: {reason}")
  out = tmp_path / "env"
  command = [sys.executable, str(_TOOLS / "parity.py"), "env-check", "--task=dmcproprio_cartpole_balance"]
  command += [f"--generation={generation}", "--seeds=4", f"--steps={steps}", f"--out={out}"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
  return json.loads((out / "env_check.json").read_text())["seeds"]["4"]


@pytest.mark.slow
def test_env_check_finds_the_current_codes_dmc_environment_alike(tmp_path):
  checked = _env_check(tmp_path, "current", steps=560, code=0)  # Two episodes: the reset between them too.
  assert set(checked["keys"]) == {"is_first", "is_last", "is_terminal", "reward", "position", "velocity"}
  assert checked["keys"]["position"]["max_abs_diff_first_50_steps"] < 1e-4
  assert checked["reference_episode_returns"] == pytest.approx(checked["dreamer_tf_episode_returns"], abs=0.1)


@pytest.mark.slow
def test_env_check_finds_the_2023_release_losing_its_action_repeat_after_the_first_episode(tmp_path):
  # dreamerv3 1.5.0's ActionRepeat never clears its _done after the reset that follows an episode's last
  # step, so from the second episode on every agent step is one control step: the episode does not end at
  # agent step 1,001 and a step earns about half the reward. dreamer_tf keeps the repeat (docs/parity.md).
  checked = _env_check(tmp_path, "2023", steps=510, code=1)  # 8 steps into the second episode.
  keys = checked["keys"]
  assert keys["is_first"]["agree"] and keys["is_last"]["agree"]  # Both reset after agent step 500.
  assert checked["reference_episode_returns"] == pytest.approx(checked["dreamer_tf_episode_returns"], abs=0.1)
  for key in ("reward", "position", "velocity"):
    assert keys[key]["first_step_apart"] == 502, key  # The second episode's first step after its reset.
  ours, reference = checked["dreamer_tf_reward_per_step"], checked["reference_reward_per_step"]
  assert ours[0] == pytest.approx(reference[0], abs=1e-3)
  assert reference[1] < 0.6 * ours[1]  # One control step's reward instead of two summed.


def test_reports_of_other_seeds_pool_into_one_table(tmp_path, capsys):
  def report(seeds, ours, reference, bins=(1.0, 3.0)):
    diagnostics = {"update_bins": list(bins)}
    diagnostics["model loss"] = {
      "dreamer_tf": {"seeds": {str(s): v for s, v in zip(seeds, ours)}},
      "reference": {"seeds": {str(s): v for s, v in zip(seeds, reference)}},
    }
    return {"settings": {"seeds": list(seeds)}, "diagnostics": diagnostics}

  first = report([0, 1], ours=[[1.0, 2.0], [1.2, 2.2]], reference=[[1.1, 3.0], [1.3, 3.2]])
  second = report([2, 3], ours=[[1.4, 2.4], [1.6, None]], reference=[[1.5, 3.4], [1.7, 3.6]])
  pooled = parity.pool_reports([first, second])
  row = pooled["metrics"]["model loss"]
  assert pooled["seeds"] == [0, 1, 2, 3] and row["dreamer_tf"]["mean"] == pytest.approx([1.3, 2.2])
  assert row["reference"]["min"] == [1.1, 3.0] and row["reference"]["max"] == [1.7, 3.6]
  assert row["inside"] == 0.5  # Bin 1 inside the reference's 1.1..1.7, bin 2 below its 3.0..3.6.
  # Bin 1: means 1.3 and 1.4, both sample variances 0.2 / 3: t = -0.1 / sqrt(2 * 0.0667 / 4) = -0.548.
  assert row["welch_t"][0] == pytest.approx(-0.55, abs=0.01) and row["welch_t"][1] < -5
  with pytest.raises(SystemExit):  # Seed 1 twice.
    parity.pool_reports([first, report([1], ours=[[1.0, 2.0]], reference=[[1.0, 2.0]])])
  with pytest.raises(SystemExit):  # Other bins: other --updates.
    parity.pool_reports([first, report([5], ours=[[1.0, 2.0]], reference=[[1.0, 2.0]], bins=(2.0, 6.0))])
  # A run 8 updates short of 12,000 (its bins 0.07% narrower) pools with the others.
  long = report([6], ours=[[1.0, 2.0]], reference=[[1.0, 2.0]], bins=(600.0, 1800.0))
  assert parity.pool_reports([long, report([7], ours=[[1.0, 2.0]], reference=[[1.0, 2.0]], bins=(599.6, 1798.8))])
