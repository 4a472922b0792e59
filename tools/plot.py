"""Plots learning curves from one or more runs' ``metrics.jsonl`` files into a PNG.

Usage::

  python tools/plot.py logdir/walker_seed0 logdir/walker_seed1 logdir/baseline \\
      --out=walker.png --key=episode/return --reference=991 --reference_label=paper

Each input is a run directory (holding ``metrics.jsonl``), a ``metrics.jsonl`` file, or a
directory whose subdirectories hold runs (all of them are used). Runs with the same label form
one curve: their mean as a line and a min-max (or standard deviation) band; a label defaults
to the run directory's name without a trailing seed (``walker_seed0`` and ``walker_seed1`` are
both ``walker``; a directory named ``seed0`` or ``0`` takes its parent's name). Each run's
points are averaged in ``--bins`` equal-width bins along x, then smoothed with a moving average
over ``--smooth`` bins.
"""

from __future__ import annotations

import argparse
import pathlib
import re
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from dreamer_tf.errors import MissingDependencyError, UserError
from dreamer_tf.training.logger import METRICS_FILENAME, read_metrics

_SEED_DIR = re.compile(r"^(seed)?[_-]?\d+$", re.IGNORECASE)
_SEED_SUFFIX = re.compile(r"[_-]+seed[_-]?\d+$", re.IGNORECASE)


def default_label(metrics_path: pathlib.Path) -> str:
  """The curve label for a run: its directory name without a seed suffix."""
  run_dir = metrics_path.resolve().parent
  name = run_dir.name
  if _SEED_DIR.match(name) and run_dir.parent.name:
    return run_dir.parent.name
  return _SEED_SUFFIX.sub("", name) or name


def find_runs(inputs: Sequence[str]) -> list[list[pathlib.Path]]:
  """Resolves each input to its ``metrics.jsonl`` files (several for a directory of runs)."""
  resolved = []
  for item in inputs:
    path = pathlib.Path(item)
    if path.is_file():
      resolved.append([path])
    elif (path / METRICS_FILENAME).is_file():
      resolved.append([path / METRICS_FILENAME])
    elif path.is_dir() and sorted(path.rglob(METRICS_FILENAME)):
      resolved.append(sorted(path.rglob(METRICS_FILENAME)))
    else:
      raise UserError(f"No {METRICS_FILENAME} at {item}: pass a run directory or a metrics file")
  return resolved


def load_curve(path: pathlib.Path, key: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
  """The finite ``(x, y)`` points of ``key`` in one metrics file, sorted by x."""
  xs, ys = [], []
  for row in read_metrics(path):
    x, y = row.get(x_key), row.get(key)
    if isinstance(x, (int, float)) and isinstance(y, (int, float)) and np.isfinite(x) and np.isfinite(y):
      xs.append(float(x))
      ys.append(float(y))
  order = np.argsort(xs, kind="stable")
  return np.asarray(xs)[order], np.asarray(ys)[order]


def binned(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Mean of ``y`` per bin; empty bins inside the run's x range are interpolated, others nan."""
  centers = (edges[:-1] + edges[1:]) / 2
  index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(centers) - 1)
  sums = np.bincount(index, weights=y, minlength=len(centers))
  counts = np.bincount(index, minlength=len(centers))
  values = np.full(len(centers), np.nan)
  filled = counts > 0
  values[filled] = sums[filled] / counts[filled]
  if filled.sum() >= 2:
    inside = (centers >= centers[filled][0]) & (centers <= centers[filled][-1])
    values[inside] = np.interp(centers[inside], centers[filled], values[filled])
  return values


def smooth(values: np.ndarray, window: int) -> np.ndarray:
  """Centered moving average over ``window`` bins that ignores nan bins and keeps them nan."""
  if window <= 1:
    return values
  valid = np.isfinite(values)
  kernel = np.ones(window)
  total = np.convolve(np.where(valid, values, 0.0), kernel, mode="same")
  count = np.convolve(valid.astype(np.float64), kernel, mode="same")
  return np.where(valid, total / np.maximum(count, 1.0), np.nan)


def _format_steps(value: float, _=None) -> str:
  for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
    if abs(value) >= scale:
      return f"{value / scale:g}{suffix}"
  return f"{value:g}"


def _parse_labels(labels: list[str] | None, count: int) -> list[str | None]:
  if not labels:
    return [None] * count
  if len(labels) == 1 and "," in labels[0]:
    labels = [label.strip() for label in labels[0].split(",")]
  if len(labels) == 1:
    return labels * count
  if len(labels) != count:
    raise UserError(f"Got {len(labels)} --label values for {count} inputs: give one per input, or one for all")
  return labels


def plot(args: argparse.Namespace) -> pathlib.Path:
  """Draws the curves described by the parsed arguments and writes the PNG."""
  try:
    import matplotlib
  except ImportError:
    raise MissingDependencyError("matplotlib", "tools/plot.py", extra="test") from None
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import FuncFormatter

  groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
  for label, paths in zip(_parse_labels(args.label, len(args.runs)), find_runs(args.runs)):
    for path in paths:
      x, y = load_curve(path, args.key, args.x)
      if len(x) == 0:
        print(f"warning: {path} has no '{args.key}' values; skipping it", file=sys.stderr)
        continue
      groups.setdefault(label or default_label(path), []).append((x, y))
  if not groups:
    raise UserError(f"No run has values for --key={args.key}; check the key name (e.g. episode/return)")

  x_min = min(x.min() for runs in groups.values() for x, _ in runs)
  x_max = max(x.max() for runs in groups.values() for x, _ in runs)
  if x_max <= x_min:
    x_max = x_min + 1.0
  edges = np.linspace(x_min, x_max, args.bins + 1)
  centers = (edges[:-1] + edges[1:]) / 2

  fig, ax = plt.subplots(figsize=(args.width, args.height), dpi=args.dpi)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for i, (label, runs) in enumerate(groups.items()):
    color = colors[i % len(colors)]
    curves = np.stack([smooth(binned(x, y, edges), args.smooth) for x, y in runs])
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # All-nan columns.
      mean = np.nanmean(curves, axis=0)
      if args.band == "std":
        std = np.nanstd(curves, axis=0)
        low, high = mean - std, mean + std
      else:
        low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
    if len(runs) == 1:
      x, y = runs[0]
      ax.scatter(x, y, s=6, color=color, alpha=0.25, linewidths=0)
      ax.plot(centers, mean, color=color, linewidth=1.8, label=label)
    else:
      if args.band != "none":
        ax.fill_between(centers, low, high, color=color, alpha=0.2, linewidth=0)
      band = {"minmax": ", min-max", "std": ", \u00b1 std"}.get(args.band, "")
      ax.plot(centers, mean, color=color, linewidth=1.8, label=f"{label} (mean of {len(runs)}{band})")
  for j, value in enumerate(args.reference or []):
    ref_labels = args.reference_label or []
    ref_label = ref_labels[j] if j < len(ref_labels) else None
    ax.axhline(value, color="0.35", linestyle="--", linewidth=1.2, label=ref_label)

  if args.x == "step":
    ax.xaxis.set_major_formatter(FuncFormatter(_format_steps))
  ax.set_xlabel("agent steps" if args.x == "step" else args.x)
  ax.set_ylabel(args.key)
  if args.log_y:
    ax.set_yscale("log")
  ax.set_title(args.title if args.title is not None else args.key)
  ax.grid(alpha=0.3)
  ax.spines[["top", "right"]].set_visible(False)
  ax.legend(frameon=False, loc="best")
  fig.tight_layout()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out)
  plt.close(fig)
  return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("runs", nargs="+", help="Run directories or metrics.jsonl files.")
  parser.add_argument("--out", required=True, help="The PNG file to write.")
  parser.add_argument("--key", default="episode/return", help="The metric on the y axis.")
  parser.add_argument("--x", default="step", help="The metric on the x axis.")
  parser.add_argument(
    "--label",
    action="append",
    help="Curve label: once per input (or comma-separated), or once for all; equal labels share a curve.",
  )
  parser.add_argument("--title", default=None, help="The plot title (default: the key).")
  parser.add_argument("--reference", type=float, action="append", help="A horizontal reference line.")
  parser.add_argument("--reference_label", action="append", help="Legend label of each --reference.")
  parser.add_argument("--band", choices=("minmax", "std", "none"), default="minmax", help="Band across runs.")
  parser.add_argument("--bins", type=int, default=60, help="Bins along x; each run is averaged per bin.")
  parser.add_argument("--smooth", type=int, default=5, help="Moving-average window in bins (1: none).")
  parser.add_argument("--width", type=float, default=7.0, help="Figure width in inches.")
  parser.add_argument("--height", type=float, default=4.5, help="Figure height in inches.")
  parser.add_argument("--dpi", type=int, default=120)
  parser.add_argument("--log_y", action="store_true", help="Logarithmic y axis (e.g. for losses).")
  args = parser.parse_args(argv)
  if args.bins < 1:
    parser.error("--bins must be at least 1")
  return args


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    out = plot(args)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"Wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
