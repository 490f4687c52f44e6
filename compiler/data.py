"""Data sets: the built-in ``digits`` (scikit-learn's 8x8 handwritten digits) or a user ``.npz`` (x, y).

digits: 1797 images, pixel values 0..16 scaled to [0, 1] (x / 16), shape (N, 1, 8, 8), labels 0..9.
Fixed split: ``train_test_split(test_size=360, random_state=0, stratify=y)`` -> 1437 train, 360 test.
Evaluation uses the test split, calibration the train split."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from snnc.ir.errors import DataError

DIGITS_TEST_SIZE = 360
DIGITS_SEED = 0


def digits(split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn digits as float32 (N, 1, 8, 8) in [0, 1] and int64 labels; split 'train', 'test' or 'all'."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    if split == "all":
        return x, y
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=DIGITS_TEST_SIZE, random_state=DIGITS_SEED, stratify=y)
    if split == "train":
        return xtr, ytr
    if split == "test":
        return xte, yte
    raise DataError(f"digits: unknown split {split!r} (train, test, all)")


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """User data: an .npz with float ``x`` (N, C, H, W) or (N, features) and integer ``y`` (N,)."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such data file (expected 'digits' or an .npz with arrays x and y)")
    try:
        with np.load(p, allow_pickle=False) as f:
            if "x" not in f.files:
                raise DataError(f"{p}: missing array 'x' (has {f.files})")
            x = np.asarray(f["x"])
            y = np.asarray(f["y"]) if "y" in f.files else None
    except DataError:
        raise
    except Exception as e:
        raise DataError(f"{p}: not a readable .npz file ({type(e).__name__}: {e})") from None
    if x.dtype.kind not in "fiu":
        raise DataError(f"{p}: field 'x' must be numeric, has dtype {x.dtype}")
    x = x.astype(np.float32)
    if x.ndim < 2:
        raise DataError(f"{p}: field 'x' must be (N, ...) with a batch dimension, has shape {x.shape}")
    if x.shape[0] == 0:
        raise DataError(f"{p}: field 'x' holds no samples (shape {x.shape}); a data set needs N >= 1")
    if not np.all(np.isfinite(x)):
        raise DataError(f"{p}: field 'x' contains NaN or inf")
    if y is not None:
        if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
            raise DataError(f"{p}: field 'y' must be integer labels of shape ({x.shape[0]},), has {y.dtype} "
                            f"{y.shape}")
        y = y.astype(np.int64)
    return x, y


def load_dataset(spec: str, split: str = "test") -> tuple[np.ndarray, np.ndarray | None]:
    """``digits`` (split train/test) or a path to an .npz (the whole file, whatever the split)."""
    if spec == "digits":
        return digits(split)
    return load_npz(spec)
