"""Tests for tools/export_latency.py."""

import importlib.util
import json

from export_helpers import REPO

_spec = importlib.util.spec_from_file_location("dreamer_tools_export_latency", REPO / "tools" / "export_latency.py")
export_latency = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(export_latency)


def test_reports_latency_and_throughput_per_preset(tmp_path):
  out = tmp_path / "latency.json"
  results = export_latency.main(["--configs=debug", "--iters=10", "--batch_iters=2", "--batch=8", f"--out={out}"])
  assert json.loads(out.read_text()) == results
  entry = results["presets"]["debug"]
  assert 0 < entry["batch1_p50_ms"] <= entry["batch1_p99_ms"]
  assert entry["batch8_steps_per_sec"] > 0 and entry["batch1_calls"] == 10
  assert entry["parameters"] > 0 and results["env"] == "atari100k_pong"
