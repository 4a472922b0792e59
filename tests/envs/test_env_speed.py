"""tools/env_speed.py: the table and the JSON record."""

import importlib.util
import json
import pathlib

TOOL = pathlib.Path(__file__).resolve().parents[2] / "tools" / "env_speed.py"


def load_tool():
  spec = importlib.util.spec_from_file_location("env_speed", TOOL)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_env_speed_table_and_json(tmp_path, capsys):
  tool = load_tool()
  out = tmp_path / "speed.json"
  assert tool.main(["--env=gym_CartPole-v1,atari100k_pong", "--env=nosuch_env", "--steps=50", f"--json={out}"]) == 0
  table = capsys.readouterr().out
  assert "gym_CartPole-v1" in table and "atari100k_pong" in table and "skipped: unknown" in table
  results = json.loads(out.read_text())["results"]
  assert results[0]["steps"] == 50 and results[0]["steps_per_sec"] > 0
  assert results[1]["repeat"] == 4 and results[1]["observation"] == "image[64, 64, 3]"
  assert "error" in results[2]
