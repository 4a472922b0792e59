"""Tests for tools/benchmark.py: the arguments of one or several ``--configs`` and the current generation's FLOPs."""

import importlib.util
import math
import pathlib
import subprocess
import sys

import pytest

TOOL = pathlib.Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"
_spec = importlib.util.spec_from_file_location("dreamer_tools_benchmark", TOOL)
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def test_one_configs_group_by_default_and_repeated_groups_in_order():
  assert benchmark.parse_args([]).configs == ["s"]
  args = benchmark.parse_args(["--configs=s", "--configs=m", "--configs=nature,size12m", "--configs=nature,size50m"])
  assert args.configs == ["s", "m", "nature,size12m", "nature,size50m"]


@pytest.mark.parametrize("argv", [["--configs=,"], ["--updates=0"]])
def test_bad_arguments_stop_with_a_usage_error(argv, capsys):
  with pytest.raises(SystemExit) as info:
    benchmark.parse_args(argv)
  assert info.value.code == 2
  assert "error:" in capsys.readouterr().err


def test_child_command_carries_every_option_but_the_other_groups():
  args = benchmark.parse_args(
    ["--configs=s", "--configs=nature,size12m", "--override=replay.batch_size=8", "--updates=2"]
    + ["--no_export", "--env_steps=0", "--precision=float32", "--json=all.json"]
  )
  cmd = benchmark.child_command(args, "nature,size12m", "/tmp/one.json")
  assert cmd[:2] == [sys.executable, str(TOOL)]
  assert cmd[2:] == [
    "--env=atari100k_pong",
    "--configs=nature,size12m",
    "--override=replay.batch_size=8",
    "--precision=float32",
    "--updates=2",
    "--policy_batch=16",
    "--policy_iters=50",
    "--env_steps=0",
    "--json=/tmp/one.json",
    "--no_export",
  ]
  # The child's own arguments parse back to one group with the same settings.
  child = benchmark.parse_args(cmd[2:])
  assert child.configs == ["nature,size12m"] and child.no_export and not child.no_matmul
  assert (child.updates, child.env_steps, child.override) == (2, 0, ["replay.batch_size=8"])


def _kernel_flops(layer):
  """``2 x`` the kernel elements of a layer: its forward FLOPs per row when it is all dense."""
  return 2 * sum(v.shape.num_elements() for v in layer.variables if v.name.split("/")[-1].startswith("kernel"))


def test_nature_module_flops_match_the_built_agents_layers():
  """The analytic per-row FLOPs equal ``2 x`` the kernels of the layers the agent builds (the convolutions
  at their resolutions), for the current generation's debug size with 64x64x3 images and 6 actions."""
  from dreamer_tf.agent.dreamer_agent import DreamerAgent
  from dreamer_tf.config import load_config
  from dreamer_tf.envs import env_tensor_specs

  config = load_config("atari100k_pong", ["nature", "debug"])
  agent = DreamerAgent(*env_tensor_specs("atari100k_pong", config), config)
  flops = benchmark.nature_module_flops(config, {"image": (64, 64, 3)}, 6, True)
  wm, ac = agent.world_model, agent.actor_critic
  rssm = wm.rssm
  assert flops["core"] == _kernel_flops(rssm.core)
  assert flops["prior"] == sum(map(_kernel_flops, [*rssm.prior, rssm.prior_logit]))
  assert flops["post"] == sum(map(_kernel_flops, [*rssm.post, rssm.post_logit]))
  for name, head in (("reward", wm.reward_head), ("cont", wm.cont_head), ("actor", ac.actor), ("critic", ac.critic)):
    assert flops[name] == _kernel_flops(head), name
  enc, dec = wm.encoder.cnn, wm.decoder.cnn
  assert flops["embed"] == enc.output_size
  conv = lambda layer, side: side * side * _kernel_flops(layer)
  assert flops["enc"] == sum(conv(c, 64 >> i) for i, c in enumerate(enc.convs))
  projection = sum(map(_kernel_flops, (dec.deter_space, dec.stoch_hidden, dec.stoch_space)))
  assert flops["dec"] == projection + sum(conv(c, 8 << i) for i, c in enumerate(dec.convs)) + conv(dec.out, 64)
  update = benchmark.update_flops(config, {"image": (64, 64, 3)}, 6, True)
  assert update == benchmark.nature_update_flops(config, {"image": (64, 64, 3)}, 6, True)
  assert math.isclose(update["total"], sum(v for k, v in update.items() if k != "total"))
  assert update["replay_value"] == 4 * 4 * 16 * flops["critic"]  # batch 4 x 16 of the debug preset


def test_a_failing_group_stops_the_run_naming_it(tmp_path):
  """Each group runs in its own child process; the first that fails ends the run with its error, before
  the groups after it start (here: an unknown preset, refused before any training)."""
  out = tmp_path / "bench.json"
  cmd = [sys.executable, str(TOOL), "--configs=nature,no_such_size", "--configs=s", f"--json={out}"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert "benchmark: --configs=nature,no_such_size failed:" in proc.stderr
  assert "unknown preset 'no_such_size'" in proc.stderr
  assert proc.stdout.splitlines() == ["--configs=nature,no_such_size"] and not out.exists()
