"""Learning curves of a fine-tuning benchmark: the validation metric against the epoch, one line per initialisation.

    python benchmarks/plot_learning_curves.py RESULTS.json [MORE.json ...] [--metric auc|accuracy|dice|iou]
        [--fraction F] [--out FILE.png]

Reads the ``history`` that the benchmark recorded for every run (``{"epoch", "auc", "accuracy"}`` of
``finetune_adrenal`` after each epoch, ``{"epoch", "step", "dice", "iou"}`` of ``finetune_brats`` at each of its
validations; the runs of several files, e.g. one per initialisation, are pooled; ``--fraction`` keeps the runs
of one share of the training data), averages it over the seeds of each
initialisation and draws the mean as a line and mean ± one standard
deviation as a band (PIL only, no plotting library needed). The same figures are printed as a Markdown table, and
the PNG is written beside the first JSON unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import common

logger = logging.getLogger("benchmarks.plot_learning_curves")

# colour-blind safe line colours (Okabe and Ito)
COLOURS = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (230, 159, 0)]
WIDTH, HEIGHT, MARGIN = 760, 460, 70


def curves(payload: dict, metric: str, fraction: float | None = None) -> dict[str, list[tuple[int, float, float, int]]]:
    """``{init: [(epoch, mean, std, number of seeds), ...]}`` of the runs that recorded a history."""
    by_init: dict[str, dict[int, list[float]]] = {}
    for run in payload["runs"]:
        if fraction is not None and run.get("fraction") != fraction:
            continue
        for point in run.get("history", []):
            if metric not in point:
                raise ValueError(f"{payload.get('benchmark')}: the history has no {metric!r}; it has "
                                 f"{sorted(k for k in point if k not in ('epoch', 'step'))}, pass one of them as --metric.")
            by_init.setdefault(run["init"], {}).setdefault(int(point["epoch"]), []).append(float(point[metric]))
    if not by_init:
        share = "" if fraction is None else f" at --fraction {fraction:g}"
        raise ValueError(f"{payload.get('benchmark')}: no run{share} recorded a per-epoch history; run the ResNet-18 arms.")
    return {
        init: [(epoch, *common.mean_std(values), len(values)) for epoch, values in sorted(points.items())]
        for init, points in by_init.items()
    }


def table(lines: dict[str, list[tuple[int, float, float, int]]], labels: dict[str, str], metric: str) -> str:
    """The curves as a Markdown table, one column per initialisation."""
    epochs = sorted({p[0] for points in lines.values() for p in points})
    rows = []
    for epoch in epochs:
        row = [epoch]
        for points in lines.values():
            match = [p for p in points if p[0] == epoch]
            row.append(common.fmt(match[0][1], match[0][2]) if match else "–")
        rows.append(row)
    return common.markdown_table(["epoch", *[f"{labels.get(i, i)}: {metric}" for i in lines]], rows)


def draw(lines: dict[str, list[tuple[int, float, float, int]]], labels: dict[str, str], metric: str, title: str):
    """The PNG: mean lines with ± std bands over a grid of the epochs and the metric."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    canvas = ImageDraw.Draw(image, "RGBA")
    font = ImageFont.load_default()
    epochs = [p[0] for points in lines.values() for p in points]
    lows = [p[1] - p[2] for points in lines.values() for p in points]
    highs = [p[1] + p[2] for points in lines.values() for p in points]
    x0, x1 = min(epochs), max(max(epochs), min(epochs) + 1)
    y0, y1 = max(0.0, min(lows) - 0.02), min(1.0, max(highs) + 0.02)
    left, right, top, bottom = MARGIN, WIDTH - 20, 40, HEIGHT - MARGIN

    def xy(epoch, value):
        return (left + (epoch - x0) / (x1 - x0) * (right - left), bottom - (value - y0) / (y1 - y0) * (bottom - top))

    canvas.rectangle([left, top, right, bottom], outline="black")
    for k in range(6):
        value = y0 + k * (y1 - y0) / 5
        _, y = xy(x0, value)
        canvas.line([left, y, right, y], fill=(225, 225, 225))
        canvas.text((left - 45, y - 6), f"{value:.3f}", fill="black", font=font)
    tick = max(1, math.ceil((x1 - x0) / 20))
    for epoch in range(x0, x1 + 1, tick):
        x, _ = xy(epoch, y0)
        canvas.text((x - 3, bottom + 6), str(epoch), fill="black", font=font)
    canvas.text(((left + right) / 2 - 15, bottom + 24), "epoch", fill="black", font=font)
    canvas.text((8, 22), f"validation {metric}: mean ± std over seeds", fill="black", font=font)
    canvas.text((8, 6), title, fill="black", font=font)
    for i, (init, points) in enumerate(lines.items()):
        colour = COLOURS[i % len(COLOURS)]
        band = [xy(e, m + s) for e, m, s, _ in points] + [xy(e, m - s) for e, m, s, _ in reversed(points)]
        if len(points) > 1:
            canvas.polygon(band, fill=(*colour, 50))
            canvas.line([xy(e, m) for e, m, _, _ in points], fill=colour, width=3)
        for e, m, _, _ in points:
            x, y = xy(e, m)
            canvas.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        seeds = max(p[3] for p in points)
        canvas.line([left + 10, bottom - 20 - 16 * i, left + 30, bottom - 20 - 16 * i], fill=colour, width=3)
        canvas.text((left + 36, bottom - 26 - 16 * i), f"{labels.get(init, init)} ({seeds} seeds)", fill="black",
                    font=font)
    return image


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="results JSON files of one benchmark with per-epoch histories")
    parser.add_argument("--metric", default="auc", choices=("auc", "accuracy", "dice", "iou"))
    parser.add_argument("--fraction", type=float, help="only the runs on this share of the training data")
    parser.add_argument("--out", help="the PNG (default: beside the JSON, NAME_curve_METRIC[_FRACTION].png)")
    args = parser.parse_args(argv)
    path = Path(args.results[0])
    payloads = [json.loads(Path(p).read_text()) for p in args.results]
    payload = {**payloads[0], "runs": [run for p in payloads for run in p["runs"]]}
    labels = getattr(importlib.import_module(f"benchmarks.{payload['benchmark']}"), "LABELS", {})

    lines = curves(payload, args.metric, args.fraction)
    share = "" if args.fraction is None else f"_{args.fraction:g}"
    out = Path(args.out) if args.out else path.with_name(f"{path.stem}_curve_{args.metric}{share}.png")
    title = f"{payload['benchmark']} ({payload['setting']}, {payload['machine'].get('device', '?')})"
    if args.fraction is not None:
        title += f", {100 * args.fraction:.0f}% of the training data"
    draw(lines, labels, args.metric, title).save(out)
    print(table(lines, labels, args.metric))
    logger.info(f"wrote {out}")
    return out


if __name__ == "__main__":
    common.setup_logging()
    main()
