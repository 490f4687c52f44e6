"""Which data a command uses: ``SOURCE[:SPLIT]`` specs, the calibration and evaluation roles, the held-out
validation part of calibration data, and how much evaluation data the compiler has already seen.

Spec: ``SOURCE`` or ``SOURCE:SPLIT``. SOURCE is a built-in data set (``snnc.data.BUILTIN``: ``digits``) or a path
to an .npz; a path that exists as written is never cut at a colon. SPLIT: ``train``, ``test`` or ``all`` for
digits; for an .npz, NAME selects its arrays ``x_NAME`` / ``y_NAME`` (``snnc.data.load_npz``).

Roles: ``calib`` is data the compiler fits on (thresholds, quantization ranges, layer calibration, fine-tuning,
and the validation part that ALBSNN selection holds out of all of these); ``eval`` is data accuracy is reported on.
A spec without a split means, per role: digits -> ``train`` (calib) / ``test`` (eval); an .npz -> its unnamed
arrays ``x``/``y`` when it has them, else its split ``train`` (calib) / ``test`` (eval).
Defaults (``default_specs``): neither given -> ``digits`` for both; one given -> the other is the same SOURCE,
so one .npz with x_train/x_test (or digits) serves both roles with different samples.
``overlap`` counts evaluation samples that also occur (byte for byte) in the calibration data: commands report it,
and a non-zero count means the accuracy is not measured on unseen data."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from snnc.ir.errors import DataError

ROLES = {"calib": "train", "eval": "test"}  # role -> the split a spec without one means
DIGITS = "digits"


def fingerprint(x: np.ndarray) -> str:
    """sha256 of the inputs as float32 bytes (C order), 16 hex digits: the same data gives the same string."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()[:16]


def parse_spec(spec: str) -> tuple[str, str | None]:
    """(source, split or None) of ``SOURCE[:SPLIT]``; the split must be a name (letters, digits, _, -)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data spec {spec!r}: expected 'digits', 'digits:SPLIT', FILE.npz or FILE.npz:SPLIT")
    from snnc.data import BUILTIN

    if spec in BUILTIN or Path(spec).exists():
        return spec, None
    src, sep, split = spec.rpartition(":")
    if sep and src and split and split.replace("_", "").replace("-", "").isalnum():
        return src, split
    return spec, None


@dataclass
class Data:
    """Samples for one role. ``x`` float32 (N, ...); ``y`` int64 labels or None; ``spec`` as resolved
    (``SOURCE:SPLIT``, or ``SOURCE`` for an .npz's unnamed arrays, plus `` (part)`` for a subset)."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    split: str | None
    role: str
    part: str = ""  # "", "fit" or "validation" (the held-out part of calibration data), "first N"
    sha256: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = fingerprint(self.x)

    @property
    def spec(self) -> str:
        s = self.source + (f":{self.split}" if self.split else "")
        return s + (f" ({self.part})" if self.part else "")

    @property
    def samples(self) -> int:
        return int(len(self.x))

    def labels(self) -> np.ndarray:
        """The labels; ``DataError`` naming the data when it has none."""
        if self.y is None:
            raise DataError(f"{self.spec}: has no labels ('y' or 'y_<split>'); accuracy needs them")
        return self.y

    def subset(self, idx: np.ndarray | slice, part: str) -> "Data":
        return Data(self.x[idx], None if self.y is None else self.y[idx], self.source, self.split, self.role, part)

    def first(self, n: int | None) -> "Data":
        """The first ``n`` samples (all for None); ``DataError`` for n < 1."""
        if n is None or n >= self.samples:
            return self
        if n < 1:
            raise DataError(f"{self.spec}: a sample limit must be >= 1, got {n}")
        return self.subset(slice(0, n), f"first {n}")

    def describe(self) -> dict:
        """What the JSON reports say about this data: spec, source, split, role, part, samples, labelled, sha256
        (of x's bytes, 16 hex digits)."""
        return {"spec": self.spec, "source": self.source, "split": self.split, "role": self.role,
                "part": self.part or None, "samples": self.samples, "labelled": self.y is not None,
                "sha256": self.sha256}


def _npz_split(source: str, role: str) -> str | None:
    from snnc.data import npz_splits

    splits = npz_splits(source)
    if "" in splits:
        return None
    want = ROLES[role]
    if want in splits:
        return want
    raise DataError(f"{source}: has no arrays 'x'/'y' and no split {want!r} (x_{want}/y_{want}) for "
                    f"{'calibration' if role == 'calib' else 'evaluation'}; its named splits are {splits or 'none'}: "
                    f"name one as {source}:SPLIT")


def load(spec: str, role: str) -> Data:
    """The data ``spec`` means for ``role`` ("calib" or "eval"; see the module docstring)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {sorted(ROLES)}, got {role!r}")
    from snnc.data import BUILTIN, load_dataset

    source, split = parse_spec(spec)
    if source in BUILTIN:
        splits = BUILTIN[source][1]
        split = split or splits[0 if role == "calib" else 1]
        if split not in splits:
            raise DataError(f"{spec}: {source} has splits {', '.join(splits)}, not {split!r}")
    elif split is None:
        split = _npz_split(source, role)
    x, y = load_dataset(source, split)
    return Data(x, y, source, split, role)


def default_specs(calib: str | None, data: str | None) -> tuple[str, str]:
    """(calibration spec, evaluation spec) from the --calib / --data arguments (None: not given)."""
    if calib is None and data is None:
        return DIGITS, DIGITS
    if calib is None:
        return parse_spec(data)[0], data
    if data is None:
        return calib, parse_spec(calib)[0]
    return calib, data


def _row_keys(x: np.ndarray) -> set[bytes]:
    x = np.ascontiguousarray(x)
    return {hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in x.reshape(len(x), -1)}


def overlap(calib: Data, evaluation: Data) -> int:
    """Evaluation samples whose x equals (byte for byte) some calibration sample's x."""
    if calib.sha256 == evaluation.sha256:
        return evaluation.samples
    seen = _row_keys(calib.x)
    xe = np.ascontiguousarray(evaluation.x)
    return int(sum(hashlib.blake2b(r.tobytes(), digest_size=16).digest() in seen
                   for r in xe.reshape(len(xe), -1)))


def holdout(data: Data, fraction: float, seed: int = 0) -> tuple[Data, Data]:
    """(fit part, validation part) of calibration data: a seeded draw of round(fraction * N) samples, stratified
    by label when every class has at least two samples, held out of everything the compiler fits."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1), got {fraction!r}")
    n = data.samples
    nv = int(round(fraction * n))
    if nv < 1 or nv > n - 1:
        raise DataError(f"{data.spec}: {n} calibration samples cannot be split into a fit part and a validation "
                        f"part of fraction {fraction} (each needs >= 1 sample)")
    idx = np.arange(n)
    strat = None
    if data.y is not None:
        _, counts = np.unique(data.y, return_counts=True)
        if counts.min() >= 2 and len(counts) <= nv and len(counts) <= n - nv:
            strat = data.y
    from sklearn.model_selection import train_test_split

    fit, val = train_test_split(idx, test_size=nv, random_state=seed, stratify=strat)
    fit, val = np.sort(fit), np.sort(val)
    return data.subset(fit, f"fit {len(fit)}"), data.subset(val, f"validation {len(val)}")


def data_report(calib: Data | None = None, evaluation: Data | None = None, **parts: Data) -> dict:
    """The ``data`` object of a JSON report: each role's description and, with both, ``eval_samples_in_calib``
    (evaluation samples the compiler has seen; 0 means the accuracy is on unseen data)."""
    out: dict = {}
    if calib is not None:
        out["calib"] = calib.describe()
    for k, d in parts.items():
        out[k] = d.describe()
    if evaluation is not None:
        out["eval"] = evaluation.describe()
    if calib is not None and evaluation is not None:
        out["eval_samples_in_calib"] = overlap(calib, evaluation)
    return out


def graph_data_report(graph, evaluation: Data) -> dict:
    """The ``data`` object for a run of an already compiled graph: the evaluation data, the calibration data the
    graph records (``snnc.calib_samples``, ``snnc.calib_sha256``; None for graphs compiled before they were
    recorded, or by other tools) and ``eval_is_calib``: whether the evaluation inputs are exactly the calibration
    inputs (None when the graph records none)."""
    from snnc.ir import conventions as cv

    sha = cv.meta(graph, cv.CALIB_SHA256)
    calib = None if sha is None else {"samples": cv.meta(graph, cv.CALIB_SAMPLES), "sha256": sha,
                                      "spec": None, "role": "calib"}
    return {"calib": calib, "eval": evaluation.describe(),
            "eval_is_calib": None if sha is None else sha == evaluation.sha256}
