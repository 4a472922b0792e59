"""Measures replay memory and sampling speed on real Atari frames, compressed vs uncompressed.

Fills two SequenceReplayBuffers (zlib-packed image blocks, and raw arrays) with the same steps
of ``--envs`` copies of an Atari game (64x64x3 uint8 frames resized with cv2, random actions,
ALE v5 defaults: frameskip 4, sticky actions) and reports bytes per stored frame, GB per 1M
frames and the median time to sample a ``--batch`` x ``--length`` batch. ``--frames-file`` feeds
frames from a ``.npy`` array ``[N, 64, 64, 3]`` instead (e.g. rendered DMC frames).

``--full 5e6`` instead projects the memory of a full replay of that many steps (the current
generation's default capacity) for 64x64x3 and 96x96x1 frames (``--full_shapes``), from the
compressed bytes per frame measured on ``--frames`` steps of the game (resized with cv2 area
interpolation, grey for one channel), plus the other columns, with and without the replay-context
latent columns (deter and stoch, float32 as the author's current code declares them: rssm.py
``entry_space``, and bfloat16; sizes ``--deter``/``--stoch``/``--classes``, default size200m).
Latents are uncompressed (sampled floats do not compress).

Example::

  .venv/bin/python tools/replay_memory.py --game Pong --frames 100000 --json
  .venv/bin/python tools/replay_memory.py --game Pong --frames 20000 --full 5e6 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dreamer_tf.replay.sequence_replay import SequenceReplayBuffer

PAPER_GB_PER_1M = 11.4  # The official implementation, as measured (docs/stack.md).


def atari_steps(game: str, num_envs: int, seed: int, shape=(64, 64, 3)):
  """Yields batched steps in the replay step format, with TF-Agents' auto-reset semantics."""
  import ale_py
  import cv2
  import gymnasium

  gymnasium.register_envs(ale_py)
  envs = [gymnasium.make(f"ALE/{game}-v5") for _ in range(num_envs)]
  rng = np.random.default_rng(seed)
  pending_reset = np.ones(num_envs, bool)
  actions = np.zeros(num_envs, np.int32)
  episode = 0
  while True:
    frames, reward = [], np.zeros(num_envs, np.float32)
    first, last, terminal = pending_reset.copy(), np.zeros(num_envs, bool), np.zeros(num_envs, bool)
    for i, env in enumerate(envs):
      if pending_reset[i]:
        obs, _ = env.reset(seed=seed + 1000 * i + episode)
        episode += 1
      else:
        obs, reward[i], term, trunc, _ = env.step(int(actions[i]))
        last[i], terminal[i] = term or trunc, term
      frame = cv2.resize(obs, shape[1::-1], interpolation=cv2.INTER_AREA)
      if shape[2] == 1:
        frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)[..., None]
      frames.append(frame)
    actions = rng.integers(envs[0].action_space.n, size=num_envs).astype(np.int32)
    pending_reset = last
    yield {
      "obs": {"image": np.stack(frames)},
      "action": actions,
      "reward": reward,
      "is_first": first,
      "is_last": last,
      "is_terminal": terminal,
    }


def file_steps(path: str, num_envs: int, seed: int):
  """Yields steps whose frames are consecutive slices of a saved frame array, one slice per env."""
  frames = np.load(path)
  per_env = len(frames) // num_envs
  rng = np.random.default_rng(seed)
  for t in range(10**12):
    idx = np.arange(num_envs) * per_env + t % per_env
    yield {
      "obs": {"image": frames[idx]},
      "action": rng.integers(18, size=num_envs).astype(np.int32),
      "reward": np.zeros(num_envs, np.float32),
      "is_first": np.full(num_envs, t % per_env == 0),
      "is_last": np.zeros(num_envs, bool),
      "is_terminal": np.zeros(num_envs, bool),
    }


def spec(shape=(64, 64, 3)):
  import tensorflow as tf

  return {
    "obs": {"image": tf.TensorSpec(shape, tf.uint8)},
    "action": tf.TensorSpec((), tf.int32),
    "reward": tf.TensorSpec((), tf.float32),
    "is_first": tf.TensorSpec((), tf.bool),
    "is_last": tf.TensorSpec((), tf.bool),
    "is_terminal": tf.TensorSpec((), tf.bool),
  }


def measure(args) -> dict:
  stores = {
    "compressed": SequenceReplayBuffer(spec(), args.envs, args.frames, seed=0, chunk_size=args.chunk_size),
    "uncompressed": SequenceReplayBuffer(spec(), args.envs, args.frames, seed=0, compress=False),
  }
  add_s = dict.fromkeys(stores, 0.0)
  if args.frames_file:
    steps = file_steps(args.frames_file, args.envs, 0)
  else:
    steps = atari_steps(args.game, args.envs, 0)
  start = time.perf_counter()
  for _ in range(args.frames // args.envs):
    step = next(steps)
    for name, replay in stores.items():
      t = time.perf_counter()
      replay.add_batch(step)
      add_s[name] += time.perf_counter() - t
  collect_s = time.perf_counter() - start - sum(add_s.values())
  results = {
    "source": args.frames_file or f"ALE/{args.game}-v5",
    "frames": stores["compressed"].size,
    "envs": args.envs,
    "collect_s": round(collect_s, 1),
    "official_gb_per_1m_frames": PAPER_GB_PER_1M,
  }
  for name, replay in stores.items():
    stats = replay.stats()
    # Extrapolate to 1M frames: the full chunks scale, the open chunk (allocated whole) does not.
    open_rows = replay._state.end % replay._chunk_size
    open_bytes = replay._state.chunks[max(replay._state.chunks)].nbytes if open_rows else 0
    per_frame_full = (stats["bytes"] - open_bytes) / (stats["steps"] - open_rows * args.envs)
    times = []
    for _ in range(args.samples):
      t = time.perf_counter()
      replay.sample(args.batch, args.length)
      times.append(time.perf_counter() - t)
    replay._cache.clear()
    results[name] = {
      "bytes_per_frame": round(stats["bytes"] / stats["steps"], 1),
      "bytes_per_frame_full_chunks": round(per_frame_full, 1),
      "gb_per_1m_frames": round((per_frame_full * 1e6 + open_bytes) / 1e9, 3),
      "compression_ratio": round(stats["compression_ratio"], 2),
      "sample_ms_median": round(1e3 * statistics.median(times), 2),
      "sample_ms_p90": round(1e3 * sorted(times)[int(0.9 * len(times))], 2),
      "add_us_per_frame": round(1e6 * add_s[name] / stats["steps"], 1),
      "cache_hit_rate": round(replay.stats()["cache_hit_rate"], 3),
    }
  results["memory_fraction_of_official"] = round(results["compressed"]["gb_per_1m_frames"] / PAPER_GB_PER_1M, 3)
  return results


def full_replay(args) -> dict:
  """Projects the memory of a full replay of ``args.full`` steps per frame shape, with and without latents."""
  capacity = int(args.full)
  latent_bytes = 4 * (args.deter + args.stoch * args.classes)  # float32 deter [D] and stoch [S, C] per step.
  results = {
    "source": f"ALE/{args.game}-v5",
    "measured_steps": args.frames,
    "envs": args.envs,
    "capacity_steps": capacity,
    "latent_bytes_per_step": latent_bytes,
    "latent_bytes_per_step_bfloat16": latent_bytes // 2,
    "latents": {"deter": args.deter, "stoch": args.stoch, "classes": args.classes, "dtype": "float32"},
    "shapes": {},
  }
  for text in args.full_shapes:
    shape = tuple(int(x) for x in text.split("x"))
    replay = SequenceReplayBuffer(spec(shape), args.envs, args.frames, seed=0, chunk_size=args.chunk_size)
    steps = atari_steps(args.game, args.envs, 0, shape)
    for _ in range(args.frames // args.envs):
      replay.add_batch(next(steps))
    stats = replay.stats()
    open_rows = replay._state.end % replay._chunk_size
    open_bytes = replay._state.chunks[max(replay._state.chunks)].nbytes if open_rows else 0
    per_step = (stats["bytes"] - open_bytes) / (stats["steps"] - open_rows * args.envs)  # Full chunks only.
    raw_per_step = stats["raw_bytes"] / stats["steps"]
    gb = lambda b: round(b * capacity / 1e9, 2)
    results["shapes"][text] = {
      "bytes_per_step_compressed": round(per_step, 1),
      "bytes_per_step_uncompressed": round(raw_per_step, 1),
      "gb_compressed": gb(per_step),
      "gb_compressed_with_latents": gb(per_step + latent_bytes),
      "gb_compressed_with_bfloat16_latents": gb(per_step + latent_bytes // 2),
      "gb_uncompressed": gb(raw_per_step),
      "gb_uncompressed_with_latents": gb(raw_per_step + latent_bytes),
    }
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--game", default="Pong", help="ALE game name, e.g. Pong, Breakout, MsPacman")
  parser.add_argument("--frames", type=int, default=100_000, help="frames to store (all envs together)")
  parser.add_argument("--envs", type=int, default=4, help="parallel environments = replay streams")
  parser.add_argument("--frames-file", default=None, help=".npy array [N, 64, 64, 3] to use instead of Atari")
  parser.add_argument("--chunk-size", type=int, default=256)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--length", type=int, default=64)
  parser.add_argument("--samples", type=int, default=50, help="sampled batches for the timing")
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  parser.add_argument("--full", type=float, default=0, help="project a full replay of this many steps (e.g. 5e6)")
  parser.add_argument("--full_shapes", nargs="+", default=["64x64x3", "96x96x1"], help="frame shapes for --full")
  parser.add_argument("--deter", type=int, default=8192, help="latent deter size for --full (size200m: 8192)")
  parser.add_argument("--stoch", type=int, default=32, help="latent stoch groups for --full")
  parser.add_argument("--classes", type=int, default=64, help="latent stoch classes for --full (size200m: 64)")
  args = parser.parse_args(argv)
  if args.full:
    results = full_replay(args)
    if args.json:
      print(json.dumps(results, indent=1))
      return
    src = results["source"]
    print(f"a full replay of {results['capacity_steps']:.3g} steps, {src} frames measured over {args.frames}")
    for text, r in results["shapes"].items():
      print(
        f"{text:>8}: compressed {r['gb_compressed']:7.2f} GB ({r['gb_compressed_with_latents']:7.2f} with latents), "
        f"uncompressed {r['gb_uncompressed']:7.2f} GB ({r['gb_uncompressed_with_latents']:7.2f} with latents)"
      )
    return
  results = measure(args)
  if args.json:
    print(json.dumps(results, indent=1))
    return
  print(f"{results['frames']} frames of {results['source']} in {args.envs} streams")
  for name in ("compressed", "uncompressed"):
    r = results[name]
    print(
      f"{name:>12}: {r['bytes_per_frame_full_chunks']:8.0f} B/frame  {r['gb_per_1m_frames']:6.2f} GB per 1M "
      f"frames  ratio {r['compression_ratio']:5.1f}  sample {args.batch}x{args.length}: "
      f"{r['sample_ms_median']:.1f} ms median ({r['sample_ms_p90']:.1f} p90)  "
      f"add {r['add_us_per_frame']:.0f} us/frame"
    )
  fraction = results["memory_fraction_of_official"]
  print(f"compressed store: {fraction:.1%} of the official ~{PAPER_GB_PER_1M} GB per 1M frames")


if __name__ == "__main__":
  main()
