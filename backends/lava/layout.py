"""Index order between NIR/torch tensors and Lava tensors (pure numpy; no lava import).

NIR and torch hold images as (C, H, W) and compute conv2d as a cross-correlation with weights (out, in, kh, kw).
Lava holds them as (W, H, C) = (x, y, c), with conv weights (out, kx, ky, in), and its Conv computes a true
convolution (the kernel is flipped). A Lava OutPort flattened in C order over (W, H, C) enumerates neurons
as x*H*C + y*C + c, whereas NIR's Flatten over (C, H, W) enumerates c*H*W + y*W + x.
"""
from __future__ import annotations

import numpy as np
from snnc.ir.errors import UnsupportedLayerError


def lava_shape(shape: tuple, name: str = "?") -> tuple:
    """Lava shape of a NIR tensor shape (no batch): (C, H, W) -> (W, H, C); (N,) -> (N,)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return shape[::-1]
    if len(shape) == 1:
        return shape
    raise UnsupportedLayerError(f"node {name!r}: tensors of shape {shape} have no Lava layout "
                                "(snnc's Lava backend takes (C, H, W) images and (N,) vectors)")


def to_lava(a: np.ndarray, nir_ndim: int) -> np.ndarray:
    """Reorder the last ``nir_ndim`` axes of ``a`` from NIR order to Lava order ((C,H,W) -> (W,H,C))."""
    a = np.asarray(a)
    if nir_ndim == 3:
        lead = a.ndim - 3
        return np.ascontiguousarray(np.transpose(a, tuple(range(lead)) + (lead + 2, lead + 1, lead)))
    return a


def from_lava(a: np.ndarray, nir_ndim: int) -> np.ndarray:
    """Inverse of ``to_lava`` ((W,H,C) -> (C,H,W)); the same axis reversal."""
    return to_lava(a, nir_ndim)


def flat_permutation(shape: tuple) -> np.ndarray:
    """``perm[j]`` = NIR flat index of the neuron at Lava flat index ``j`` (shape is the NIR shape)."""
    n = int(np.prod(shape))
    idx = np.arange(n).reshape(shape)
    return to_lava(idx, len(shape)).ravel()


def conv_weight_to_lava(w: np.ndarray) -> np.ndarray:
    """NIR conv weight (out, in, kh, kw), cross-correlation -> Lava (out, kx, ky, in), true convolution.

    Lava evaluates torch.conv2d(x_chw, W_lava[:, ::-1, ::-1].transpose(0, 3, 2, 1)), so
    W_lava = W_nir.transpose(0, 3, 2, 1)[:, ::-1, ::-1]."""
    w = np.asarray(w)
    return np.ascontiguousarray(w.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


def ungroup_conv_weight(w: np.ndarray, groups: int) -> np.ndarray:
    """A grouped NIR conv weight (out, in/groups, kh, kw) as the equivalent block-diagonal (out, in, kh, kw)."""
    w = np.asarray(w)
    out, cin_g = w.shape[:2]
    full = np.zeros((out, cin_g * groups) + w.shape[2:], dtype=w.dtype)
    cout_g = out // groups
    for g in range(groups):
        full[g * cout_g:(g + 1) * cout_g, g * cin_g:(g + 1) * cin_g] = w[g * cout_g:(g + 1) * cout_g]
    return full
