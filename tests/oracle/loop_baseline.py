"""A literal, loop-per-block rendering of the Models Genesis recipe on one ``(C, H, W, D)`` NumPy cube.

It follows the recipe of the paper's public code step by step (Python ``random`` for the decisions, one NumPy
operation per block or box, a 100 000-point Bézier curve) and serves as an independent statistical reference in
the tests and as the speed baseline of ``benchmarks/transforms.py``. Only channel 0 is
corrupted by the shuffle, as in the original; flips use spatial axes.
"""

from __future__ import annotations

import random
from math import comb

import numpy as np

__all__ = ["nonlinear", "local_shuffle", "inpaint", "outpaint", "flip", "generate_pair"]


def _bezier(points, n_times=100000):
    t = np.linspace(0.0, 1.0, n_times)
    n = len(points) - 1
    basis = np.array([comb(n, i) * t ** (n - i) * (1 - t) ** i for i in range(n + 1)])
    xs = np.array([p[0] for p in points]) @ basis
    ys = np.array([p[1] for p in points]) @ basis
    return xs, ys


def nonlinear(x, prob=0.5):
    if random.random() >= prob:
        return x
    points = [[0, 0], [random.random(), random.random()], [random.random(), random.random()], [1, 1]]
    xs, ys = _bezier(points)
    if random.random() < 0.5:
        xs = np.sort(xs)
    else:
        xs, ys = np.sort(xs), np.sort(ys)
    return np.interp(x, xs, ys)


def local_shuffle(x, prob=0.5, num_blocks=10000):
    if random.random() >= prob:
        return x
    image = x.copy()
    orig = x.copy()
    _, rows, cols, deps = x.shape
    for _ in range(num_blocks):
        sx = random.randint(1, rows // 10)
        sy = random.randint(1, cols // 10)
        sz = random.randint(1, deps // 10)
        px = random.randint(0, rows - sx)
        py = random.randint(0, cols - sy)
        pz = random.randint(0, deps - sz)
        window = orig[0, px : px + sx, py : py + sy, pz : pz + sz].flatten()
        np.random.shuffle(window)
        image[0, px : px + sx, py : py + sy, pz : pz + sz] = window.reshape((sx, sy, sz))
    return image


def inpaint(x):
    x = x.copy()
    _, rows, cols, deps = x.shape
    count = 5
    while count > 0 and random.random() < 0.95:
        sx = random.randint(rows // 6, rows // 3)
        sy = random.randint(cols // 6, cols // 3)
        sz = random.randint(deps // 6, deps // 3)
        px = random.randint(3, rows - sx - 3)
        py = random.randint(3, cols - sy - 3)
        pz = random.randint(3, deps - sz - 3)
        x[:, px : px + sx, py : py + sy, pz : pz + sz] = np.random.rand(sx, sy, sz)
        count -= 1
    return x


def outpaint(x):
    _, rows, cols, deps = x.shape
    orig = x.copy()
    x = np.random.rand(*x.shape)

    def keep_box():
        sx = rows - random.randint(3 * rows // 7, 4 * rows // 7)
        sy = cols - random.randint(3 * cols // 7, 4 * cols // 7)
        sz = deps - random.randint(3 * deps // 7, 4 * deps // 7)
        px = random.randint(3, rows - sx - 3)
        py = random.randint(3, cols - sy - 3)
        pz = random.randint(3, deps - sz - 3)
        x[:, px : px + sx, py : py + sy, pz : pz + sz] = orig[:, px : px + sx, py : py + sy, pz : pz + sz]

    keep_box()
    count = 4
    while count > 0 and random.random() < 0.95:
        keep_box()
        count -= 1
    return x


def flip(x, y, prob=0.4):
    count = 3
    while random.random() < prob and count > 0:
        axis = random.randint(1, x.ndim - 1)
        x, y = np.flip(x, axis=axis), np.flip(y, axis=axis)
        count -= 1
    return x, y


def generate_pair(x, flip_rate=0.4, local_rate=0.5, nonlinear_rate=0.9, paint_rate=0.9, inpaint_rate=0.2):
    """Corrupt one clean cube; returns ``(corrupted, target)`` as the original ``generate_pair``."""
    y = x
    x, y = flip(x, y, flip_rate)
    x = local_shuffle(x, local_rate)
    x = nonlinear(x, nonlinear_rate)
    if random.random() < paint_rate:
        x = inpaint(x) if random.random() < inpaint_rate else outpaint(x)
    return x, y
