"""Data sets: the built-in ``digits`` (scikit-learn's 8x8 handwritten digits), ``digits-events`` (the same digits as
ON/OFF event streams from a simulated DVS) or a user ``.npz``.

digits: 1797 images, pixel values 0..16 scaled to [0, 1] (x / 16), shape (N, 1, 8, 8), labels 0..9.
Fixed split: ``train_test_split(test_size=360, random_state=0, stratify=y)`` -> 1437 train, 360 test.
A user .npz holds ``x`` (and integer labels ``y``), and/or named splits ``x_NAME``/``y_NAME`` (x_train, x_test, ...).
Which data a command uses for calibration and for evaluation is ``snnc.dataspec``.

digits-events (``digits_events``): made the way N-MNIST was made from MNIST (Orchard et al. 2015: a sensor on a
pan-tilt unit moved in three saccades over the still image). Each digit sits on a dark 10 x 10 pixel canvas and
moves along the triangle (0, 0) -> (2, 1) -> (0, 2) -> (0, 0) (rows, columns, in pixels), one saccade per 10 steps,
at sub-pixel positions (bilinear sampling of the image, intensities 0..1). Every pixel of the simulated DVS keeps a
reference log intensity log(I + 0.1), set by the first frame; when the present log intensity exceeds it by the
contrast threshold 0.3 the pixel emits an ON event (an OFF event when it falls that far below) and the reference
moves by as many thresholds as were crossed. Events are binary per step, pixel and polarity: shape (N, T, 2, 10, 10)
float32 of 0/1 (channel 0 ON, 1 OFF), T = 30 (one round of saccades; longer T repeats the triangle). No noise: the
data are a deterministic function of the images, and the split is the digits split (same samples, same order)."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import numpy as np
from snnc.ir.errors import DataError

DIGITS_TEST_SIZE = 360
DIGITS_SEED = 0


def digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits as float32 (N, 1, 8, 8) in [0, 1] and int64 labels; split 'train', 'test' or 'all'."""
    if split not in ("train", "test", "all"):
        raise DataError(f"digits: unknown split {split!r} (train, test, all)")
    x, y = _digits(split)
    return x.copy(), y.copy()


@functools.lru_cache(maxsize=None)
def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    if split == "all":
        return x, y
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SEED, stratify=y)
    return (xtr, ytr) if split == "train" else (xte, yte)


EVENT_CANVAS = 10  # pixels per side: the 8 x 8 digit plus its 2-pixel travel
EVENT_STEPS = 30  # one round of three saccades
SACCADE_STEPS = 10
EVENT_THRESHOLD = 0.3  # contrast threshold, log intensity units
EVENT_EPS = 0.1  # log(I + eps): dark pixels have a finite log intensity
SACCADES = ((0.0, 0.0), (2.0, 1.0), (0.0, 2.0))  # triangle vertices (row, column offset in pixels)


def saccade_offset(t: float) -> tuple[float, float]:
    """The image's (row, column) offset at time t (steps) along the repeating triangle of three saccades."""
    k, f = divmod(t / SACCADE_STEPS, 1.0)
    a, b = SACCADES[int(k) % 3], SACCADES[(int(k) + 1) % 3]
    return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])


def _render(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Images (N, 8, 8) in [0, 1] placed at offset (dy, dx) on the dark canvas, bilinear: (N, C, C)."""
    n, h, w = img.shape
    canvas = np.zeros((n, EVENT_CANVAS + 1, EVENT_CANVAS + 1))
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    fy, fx = dy - iy, dx - ix
    for oy, wy in ((0, 1 - fy), (1, fy)):
        for ox, wx in ((0, 1 - fx), (1, fx)):
            if wy * wx:
                canvas[:, iy + oy:iy + oy + h, ix + ox:ix + ox + w] += wy * wx * img
    return canvas[:, :EVENT_CANVAS, :EVENT_CANVAS]


def events_from_images(img: np.ndarray, steps: int = EVENT_STEPS) -> np.ndarray:
    """ON/OFF events (N, steps, 2, C, C), float32 0/1, of images (N, 8, 8) in [0, 1] moved in saccades (module
    docstring)."""
    ref = np.log(_render(img, *saccade_offset(0.0)) + EVENT_EPS)
    out = np.zeros((img.shape[0], steps, 2, EVENT_CANVAS, EVENT_CANVAS), dtype=np.float32)
    for t in range(steps):
        cur = np.log(_render(img, *saccade_offset(t + 1.0)) + EVENT_EPS)
        k = np.trunc((cur - ref) / EVENT_THRESHOLD)  # whole thresholds crossed (signed)
        out[:, t, 0] = k > 0
        out[:, t, 1] = k < 0
        ref = ref + k * EVENT_THRESHOLD
    return out


def digits_events(split: str = "test", steps: int = EVENT_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """digits as DVS event streams (module docstring): float32 (N, steps, 2, 10, 10) of 0/1 and int64 labels, the
    same samples in the same order as ``digits(split)``."""
    if steps < 1:
        raise DataError(f"digits-events: steps must be >= 1, got {steps}")
    x, y = digits(split)
    return _events(split, int(steps)).copy(), y


@functools.lru_cache(maxsize=4)
def _events(split: str, steps: int) -> np.ndarray:
    return events_from_images(_digits(split)[0][:, 0].astype(np.float64), steps)


def npz_splits(path: str | os.PathLike) -> list[str]:
    """Names of the splits an .npz holds: "" for its unnamed arrays ``x``/``y``, NAME for ``x_NAME``/``y_NAME``."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such data file (expected 'digits' or an .npz with arrays x and y)")
    try:
        with np.load(p, allow_pickle=False) as f:
            files = list(f.files)
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return [""] * ("x" in files) + sorted(k[2:] for k in files if k.startswith("x_") and len(k) > 2)


def load_npz(path: str | os.PathLike, split: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """User data: an .npz with float ``x`` (N, C, H, W) or (N, features), or sequences (N, T, ...) (whether x has a
    time axis is decided against the graph's Input, ``snnc.ir.sequence``), and integer ``y`` (N,); with ``split``
    NAME, the arrays ``x_NAME`` and ``y_NAME`` of the same file (named splits, e.g. x_train/y_train/x_test/y_test)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such data file (expected 'digits' or an .npz with arrays x and y)")
    xk, yk = ("x", "y") if not split else (f"x_{split}", f"y_{split}")
    try:
        with np.load(p, allow_pickle=False) as f:
            if xk not in f.files:
                named = sorted(k[2:] for k in f.files if k.startswith("x_") and len(k) > 2)
                raise DataError(f"{p}: missing array {xk!r} (has {f.files}; named splits: {named or 'none'})")
            x = np.asarray(f[xk])
            y = np.asarray(f[yk]) if yk in f.files else None
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if x.dtype.kind not in "fiu":
        raise DataError(f"{p}: field {xk!r} must be numeric, has dtype {x.dtype}")
    x = x.astype(np.float32)
    if x.ndim < 2:
        raise DataError(f"{p}: field {xk!r} must be (N, ...) with a batch dimension, has shape {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{p}: field {xk!r} holds no samples (shape {x.shape}); a data set needs N >= 1")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{p}: field {xk!r} contains NaN or inf")
    if y is not None:
        if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
            raise DataError(f"{p}: field {yk!r} must be integer labels of shape ({x.shape[0]},), has {y.dtype} "
                            f"{y.shape}")
        y = y.astype(np.int64)
    return x, y


# built-in data sets: name -> (loader taking a split name, its splits; the first two are what calibration and
# evaluation use when no split is named)
BUILTIN: dict[str, tuple[Callable[[str], tuple[np.ndarray, np.ndarray]], tuple[str, ...]]] = {
    "digits": (digits, ("train", "test", "all")),
    "digits-events": (digits_events, ("train", "test", "all")),
}


def load_dataset(source: str, split: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """A built-in data set (``BUILTIN``; split None: its evaluation split) or a path to an .npz (``split`` None or
    "": its arrays x, y; NAME: its arrays x_NAME, y_NAME). Which split a command uses is ``snnc.dataspec``."""
    if source in BUILTIN:
        loader, splits = BUILTIN[source]
        return loader(split or splits[1])
    return load_npz(source, split)
