"""Fuzz the snnc command line from its own argparse definition.

Every subcommand's arguments are read from ``snnc.cli.build_parser()`` with their ``snnc.argspec`` specs; values
are drawn from pools derived from each spec -- valid ones (kept cheap: small T, few samples, a tiny MLP) and
invalid ones (out of range, wrong type, empty, NaN/inf, not a choice, missing/damaged/wrong-kind files, empty,
NaN, odd-shaped or label-less data, damaged NIR files, pickles that would run code, missing output folders) --
plus unknown options, extra positionals and missing required arguments. Each invocation runs in-process through
``snnc.cli.main(argv)`` (a few through the real entry points in a subprocess) and must:

- exit with a documented code (docs/cli.md: 0, 1..10 per error class, 2 usage, 70 internal, 130 interrupt), and
  never with ``InternalError`` (that is a bug the fuzzer found);
- when it fails, print exactly one stderr line ``snnc: <Class>: ...`` whose class has that exit code; never a
  ``Traceback``; with ``--json`` and success, print exactly one JSON object;
- leave no half-written output: each output file is absent/unchanged or complete (an NIR file that reads, a PNG),
  and no temporary file remains; the input fixtures are never modified;
- succeed when every value was drawn from the valid pools ("valid invocations still succeed").

Usage: python bench/fuzz_cli.py [--cases N] [--seed S] [--subprocess K]; the last line is ``key=value`` pairs:
cases, tracebacks, internal, violations, valid_failed, seconds and the exit-code distribution (rc_<code>=count).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

OK, BAD, ANY = "ok", "bad", "any"
# relative weights of the commands (Lava runs cost seconds each: run and verify are drawn less often)
WEIGHTS = {"compile": 3.0, "simulate": 3.0, "energy": 2.0, "inspect": 1.0, "sweep": 1.5, "run": 0.6, "verify": 0.3}
CHEAP_INTS = {"steps": ["1", "2", "4"], "calib_steps": ["1", "2", "4"], "calibrate": ["1", "2"],
              "calibrate_samples": ["1", "4"], "samples": ["1", "3", "6"], "batch": ["5", "64", "360"],
              "limit": ["1", "5"], "finetune": ["0", "1"], "bits": [str(b) for b in range(1, 9)]}
CHEAP_LISTS = {"steps": ["1", "2", "1,2"], "sweep": ["", "1", "1,2"]}
CHEAP_FLOATS = {"timeout": ["600"], "max_drop": ["0", "0.5", "100"], "storage": ["0.5", "1"],
                "percentile": ["50", "99.99", "100"], "v_init": ["0", "0.5", "1"]}
EXPENSIVE = {"plots": 0.15, "tune": 0.3, "restructure": 0.3, "calibrate": 0.3, "finetune": 0.3, "steps": 0.8,
             "cluster": 0.05}
# flags whose success depends on the data, not on the command line (--strict fails on any saturation)
DATA_DEPENDENT = {"strict"}
# arguments whose default is slow (Lava's 20 samples at T=32, a sweep over 7 T values): always given
ALWAYS = {("run", "samples"), ("run", "steps"), ("run", "backend"), ("verify", "samples"), ("verify", "steps"),
          ("sweep", "steps"), ("sweep", "limit")}


class TimedOut(BaseException):
    """Raised by the per-case alarm: not an Exception, so the CLI's boundary does not catch it."""


# ---- draws: the same generator driven by hypothesis (tests) or by random.Random (this bench) -------------------
class Draw:
    def choice(self, seq: Sequence[Any]) -> Any:
        raise NotImplementedError

    def coin(self, p: float) -> bool:
        raise NotImplementedError

    def weighted(self, weights: dict[str, float]) -> str:
        raise NotImplementedError


class RandomDraw(Draw):
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def coin(self, p: float) -> bool:
        return self.rng.random() < p

    def weighted(self, weights: dict[str, float]) -> str:
        names = sorted(weights)
        return self.rng.choices(names, [weights[n] for n in names])[0]


# ---- fixtures --------------------------------------------------------------------------------------------------
@dataclass
class Fixtures:
    root: Path
    files: dict[str, Path]
    cuda: bool

    def __getitem__(self, name: str) -> str:
        return str(self.files[name])

    def digest(self) -> dict[str, str]:
        return {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in sorted(self.files.items()) if p.is_file()}


class Evil:
    """A pickle that would write a marker file when unpickled (it must never be)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def fixtures(folder: str | os.PathLike) -> Fixtures:
    """Models, graphs, data sets and damaged files the fuzzer draws from (built once)."""
    import h5py
    import torch
    from snnc.data import digits
    from snnc.ir.graph import write
    from snnc.pipeline import compile
    from snnc.zoo import DigitsMLP

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {}

    def path(name: str) -> Path:
        f[name] = d / name
        return f[name]

    x, y = digits("test")
    x, y = x[:12], y[:12]
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    m = DigitsMLP().eval()
    torch.save(m.state_dict(), path("sd.pt"))
    torch.save(m, path("whole.pt"))
    torch.export.save(torch.export.export(m, (torch.as_tensor(x[:2]),)), path("model.pt2"))
    sig = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 10))
    torch.export.save(torch.export.export(sig.eval(), (torch.as_tensor(x[:2]),)), path("sigmoid.pt2"))
    torch.save({"w": Evil(str(d / "PWNED"))}, path("evil.pt"))
    # a torch.export archive whose sample inputs would run pickle code (torch falls back to weights_only=False)
    evil2 = path("evil.pt2")
    shutil.copy(f["model.pt2"], evil2)
    _replace_member(evil2, "data/sample_inputs/", _evil_pickle_bytes(str(d / "PWNED2")))
    c = compile(m, x, calib_steps=4)
    write(c.int_graph, path("g.nir"))
    write(c.float_graph, path("f.nir"))
    data = f["g.nir"].read_bytes()
    path("trunc.nir").write_bytes(data[: len(data) // 2])
    path("empty.nir").write_bytes(b"")
    path("text.nir").write_text("not a network\n")
    flipped = bytearray(data)
    for i in rng.integers(0, len(flipped), 8):
        flipped[i] ^= 1 << int(rng.integers(0, 8))
    path("flipped.nir").write_bytes(bytes(flipped))
    shutil.copy(f["g.nir"], path("noweight.nir"))
    with h5py.File(f["noweight.nir"], "a") as h:
        del h["node/nodes/fc1/weight"]
    shutil.copy(f["g.nir"], path("nanweight.nir"))
    with h5py.File(f["nanweight.nir"], "a") as h:
        w = np.array(h["node/nodes/fc2/weight"])
        w.flat[0] = np.nan
        del h["node/nodes/fc2/weight"]
        h["node/nodes/fc2/weight"] = w
    np.savez(path("d.npz"), x=x, y=y)
    np.savez(path("flat.npz"), x=x.reshape(len(x), -1), y=y)
    np.savez(path("empty.npz"), x=np.zeros((0, 1, 8, 8), np.float32), y=np.zeros(0, np.int64))
    xn = x.copy()
    xn[0, 0, 0, 0] = np.nan
    np.savez(path("nan.npz"), x=xn, y=y)
    xi = x.copy()
    xi[1, 0, 2, 2] = np.inf
    np.savez(path("inf.npz"), x=xi, y=y)
    np.savez(path("floaty.npz"), x=x, y=y.astype(np.float64) + 0.5)
    np.savez(path("odd.npz"), x=rng.random((5, 3, 5, 5)).astype(np.float32), y=np.zeros(5, np.int64))
    np.savez(path("vec.npz"), x=np.arange(12, dtype=np.float32), y=y)
    np.savez(path("nolabels.npz"), x=x)
    np.savez(path("nox.npz"), y=y)
    np.savez(path("short.npz"), x=x, y=y[:5])
    np.savez(path("strings.npz"), x=np.array([["a"] * 3] * 4), y=np.zeros(4, np.int64))
    path("text.npz").write_text("x,y\n1,2\n")
    path("folder").mkdir(exist_ok=True)
    path("afile").write_text("a file, not a folder\n")
    import torch as _t

    return Fixtures(d, f, bool(_t.cuda.is_available()))


def _evil_pickle_bytes(marker: str) -> bytes:
    import pickle

    return pickle.dumps(Evil(marker))


def _replace_member(archive: Path, folder: str, payload: bytes) -> None:
    import zipfile

    src = archive.read_bytes()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            body = payload if folder in info.filename and info.filename.endswith(".pt") else zin.read(info)
            zout.writestr(info, body)


# ---- value pools per argument ----------------------------------------------------------------------------------
Pool = list[tuple[str, str]]  # (text, verdict)


def spec_pools(arg: Any, fx: Fixtures, cmd: str) -> Pool:
    """Valid (OK), invalid (BAD) and uncertain (ANY) values for one argument, from its spec."""
    from snnc import argspec as a

    s, dest = arg.spec, arg.dest
    pool: Pool = []
    if isinstance(s, a.Int):
        # values that make no sense for most counts come first; the spec itself says which are refused, so a spec
        # that lets one through (say --batch 0) sends it to the command, which must then not crash
        # (an allowed value is run: a large T or epoch count would take hours, so upper bounds above 64 are only
        # crossed, not hit; counts without a bound get a huge value, which only caps a slice or a batch)
        big = [] if s.hi is not None else ["1000000000000"]
        edges = [str(v) for v in (s.lo, s.hi) if v is not None and v <= 64]
        pool += judged(s, ["0", "-1", *big, *edges, *[str(v + d) for v, d in ((s.lo, -1), (s.hi, 1))
                                                      if v is not None]],
                       CHEAP_INTS.get(dest, [str(s.lo if s.lo is not None else 0)]))
        pool += [(v, BAD) for v in ("x", "", "1.5", "1e3", "0x10", "nan", " ", "--", "9" * 30 if s.hi else "x1")]
    elif isinstance(s, a.Float):
        pool += judged(s, ["0", "-1", "1e9", *[repr(float(v)) for v in (s.lo, s.hi) if v is not None],
                           *[repr(v + d) for v, d in ((s.lo, -1.0), (s.hi, 1.0)) if v is not None]],
                       CHEAP_FLOATS.get(dest, []))
        pool += [(v, BAD) for v in ("nan", "inf", "-inf", "x", "", "1,5", "1e309")]
    elif isinstance(s, a.Choice):
        pool += [(c, OK) for c in s.choices] + [("bogus", BAD), ("", BAD), (s.choices[0].upper() + "X", BAD)]
    elif isinstance(s, a.List):
        oks = CHEAP_LISTS.get(dest) or [v for v, k in item_pool(s.item) if k == OK][:3]
        pool += [(v, OK) for v in oks]
        if not s.empty:
            pool += [("", BAD)]
        pool += judged(s, ["0", "-1", "0,1", "1,-1"], []) + [(",", BAD), ("1,,2", BAD), ("x", BAD), ("nan", BAD)]
    elif isinstance(s, a.OneOf):
        pool += [(v, OK) for v, k in item_pool(s) if k == OK] + judged(s, ["-1", "0"], []) + [("bogus", BAD),
                                                                                               ("inf", BAD)]
    elif isinstance(s, a.Text):
        if dest == "model_class":
            pool += [("snnc.zoo:DigitsMLP", OK), ("", BAD), ("nocolon", BAD), ("a b:C", BAD),
                     ("no.such.module:X", ANY), ("snnc.zoo:DigitsCNN", ANY)]
        elif dest == "binarize":
            pool += [("none", OK), ("auto", OK), ("fc1", OK), ("nosuch", BAD), ("", BAD), (",", BAD),
                     ("fc1,fc2", ANY)]
        else:
            pool += [("", BAD)]
    elif isinstance(s, a.InFile) and s.what == "NIR file":
        pool += [(fx["g.nir"], OK), (fx["f.nir"], {"run": BAD, "verify": BAD, "energy": ANY}.get(cmd, OK))]
        pool += [(fx[n], BAD) for n in ("trunc.nir", "empty.nir", "text.nir", "noweight.nir", "nanweight.nir",
                                        "folder", "d.npz")]
        pool += [(str(fx.root / "missing.nir"), BAD), ("", BAD), (fx["flipped.nir"], ANY)]
    elif isinstance(s, a.InFile):  # model files
        pool += [(fx["model.pt2"], OK), (fx["sd.pt"], OK), (fx["whole.pt"], OK)]  # _semantics: class, trust
        pool += [(fx["f.nir"], OK) if cmd == "compile" else (fx["f.nir"], BAD)]
        pool += [(fx[n], BAD) for n in ("evil.pt", "evil.pt2", "sigmoid.pt2", "d.npz", "text.nir",
                                        "folder", "g.nir" if cmd == "compile" else "trunc.nir")]
        pool += [(str(fx.root / "missing.pt"), BAD), ("", BAD)]
    elif isinstance(s, a.DataSet):
        pool += [(fx["d.npz"], OK), ("digits", OK)]
        pool += [(fx[n], BAD) for n in ("empty.npz", "nan.npz", "inf.npz", "floaty.npz", "odd.npz", "nox.npz",
                                        "short.npz", "strings.npz", "text.npz", "vec.npz", "folder", "g.nir")]
        pool += [(str(fx.root / "missing.npz"), BAD), ("", BAD), ("DIGITS", BAD)]
        pool += [(fx["nolabels.npz"], ANY), (fx["flat.npz"], ANY)]
    elif isinstance(s, a.OutFile):
        pool += [("@out" + (s.suffixes[0] if s.suffixes else ".nir"), OK), ("@sentinel", OK)]
        pool += [(str(fx.root / "nofolder" / "o.x"), BAD), (fx["folder"], BAD), ("", BAD),
                 (fx["afile"] + "/o.nir", BAD)]
        if s.suffixes:
            pool += [("@out.txt", BAD)]
    elif isinstance(s, a.OutDir):
        pool += [("@outdir", OK), (fx["afile"], BAD), (fx["afile"] + "/sub", BAD), ("", BAD)]
    elif isinstance(s, a.Cluster):  # a valid spec would start Ray: only refused ones are drawn
        pool += [(v, BAD) for v in ("", "x", "LOCAL", "local:0", "local:-1", "local:x", "ray://h", "ray://h:0",
                                    "ray://h:99999", "ray://:1")]
    elif isinstance(s, a.Device):
        pool += [("cpu", OK)] + ([("cuda", OK), ("cuda:0", OK)] if fx.cuda else [("cuda", BAD), ("cuda:0", BAD)])
        pool += [(v, BAD) for v in ("gpu", "cuda:x", "tpu", "", "meta", "cuda:99", "cpu:1", "xla")]
    else:
        pool += [("x", ANY)]
    return pool


def judged(spec: Any, texts: list[str], oks: list[str]) -> Pool:
    """``texts`` with the verdict of ``spec`` itself: refused -> BAD; accepted -> OK when among the cheap valid
    ``oks``, else ANY (allowed, so the command must handle it: succeed or fail by name, never crash)."""
    from dataclasses import replace

    from snnc.ir.errors import SnncError

    out, seen = [(t, OK) for t in oks], set(oks)
    for t in texts:
        if t in seen:
            continue
        seen.add(t)
        try:
            replace(spec, name="--x")(t)
            out.append((t, ANY))
        except SnncError:
            out.append((t, BAD))
    return out


def item_pool(s: Any) -> Pool:
    """OK values of a list item / OneOf alternative."""
    from snnc import argspec as a

    if isinstance(s, a.OneOf):
        return [p for sub in s.specs for p in item_pool(sub)]
    if isinstance(s, a.Literal):
        return [(s.word, OK)]
    if isinstance(s, a.Choice):
        return [(c, OK) for c in s.choices]
    if isinstance(s, a.Int):
        return [(str(s.lo if s.lo is not None else 0), OK), (str((s.lo or 0) + 1), OK)]
    if isinstance(s, a.Float):
        lo = 0.0 if s.lo is None else float(s.lo)
        return [(repr(lo + (0.5 if s.open_lo else 0.0)), OK), (repr(lo + 1.0), OK)]
    return []


# ---- one invocation --------------------------------------------------------------------------------------------
@dataclass
class Case:
    argv: list[str]
    expect: str
    outputs: list[tuple[Path, str]] = field(default_factory=list)  # (path, "fresh" | "sentinel" | "dir")
    why: list[str] = field(default_factory=list)  # the BAD/ANY choices (for reports)


SENTINEL = b"previous content\n"


def invocation(d: Draw, fx: Fixtures, workdir: Path, cmd: str | None = None) -> Case:
    """One command line: a command, its arguments drawn from their pools (mostly valid; some invalid), junk."""
    from snnc import argspec
    from snnc.cli import build_parser

    subs = argspec.subcommands(build_parser())
    cmd = cmd or d.weighted({c: WEIGHTS.get(c, 1.0) for c in subs})
    args = argspec.arguments(subs[cmd])
    chaos = d.coin(0.6)  # a chaos case draws invalid values / junk; others only valid values
    chosen: dict[str, tuple[str, str]] = {}  # dest -> (text, verdict)
    argv_pos: list[str] = []
    argv_opt: list[str] = []
    case = Case([cmd], OK)

    for arg in args:
        p_include = 1.0 if arg.required or (cmd, arg.dest) in ALWAYS else EXPENSIVE.get(arg.dest, 0.35)
        if not d.coin(p_include):
            if arg.required and chaos and d.coin(0.1):
                case.why.append(f"missing {arg.flags[0]}")
                case.expect = BAD
            continue
        if arg.flag:
            argv_opt.append(arg.flags[0])
            chosen[arg.dest] = ("", ANY if arg.dest in DATA_DEPENDENT else OK)
            continue
        pool = spec_pools(arg, fx, cmd)
        oks = [p for p in pool if p[1] == OK]
        if chaos and d.coin(0.3) or not oks:
            text, verdict = d.choice(pool)
        else:
            text, verdict = d.choice(oks)
        text = _materialise(text, workdir, case)
        chosen[arg.dest] = (text, verdict)
        if verdict != OK:
            case.why.append(f"{arg.flags[0]}={text!r}:{verdict}")
        (argv_opt.extend([d.choice(arg.flags), text]) if arg.flags[0].startswith("-") else argv_pos.append(text))
    verdict = _combine([v for _, v in chosen.values()])
    verdict = _semantics(cmd, chosen, verdict, fx)
    if chaos and d.coin(0.12):
        junk = d.choice(["--bogus", "--bogus=1", "extra_positional", "-", "--json=1", "-o"])
        argv_opt.append(junk)
        case.why.append(f"junk {junk!r}")
        verdict = BAD
    case.argv += argv_pos + argv_opt if d.coin(0.7) else argv_opt + argv_pos
    case.expect = BAD if case.expect == BAD else verdict
    return case


# a cheap valid command line per subcommand: the start of every one-bad-value case ("@out..." are output paths)
BASE = {"compile": ["@model.pt2", "-o", "@out.nir", "--calib", "@d.npz", "--calib-steps", "2"],
        "simulate": ["@g.nir", "--data", "@d.npz", "--steps", "2"],
        "energy": ["@g.nir", "--data", "@d.npz", "--steps", "2"],
        "inspect": ["@g.nir"],
        "sweep": ["@model.pt2", "--data", "@d.npz", "--steps", "1", "--limit", "3", "--plot", "@out.png"],
        "run": ["@g.nir", "--data", "@d.npz", "--steps", "2", "--samples", "2", "--backend", "cpu"],
        "verify": ["@g.nir", "--data", "@d.npz", "--steps", "2", "--samples", "1"]}


def one_bad_values(fx: Fixtures, cmd: str, per_arg: int | None = None) -> list[tuple[Any, str, str]]:
    """(argument, value, verdict) for every value-taking argument of ``cmd`` and every value of its pool that is
    not a cheap valid one -- refused (BAD) or allowed but odd (ANY) -- or the first ``per_arg`` of them (0, -1 and
    the range boundaries come first)."""
    from snnc import argspec
    from snnc.cli import build_parser

    out = []
    for arg in argspec.arguments(argspec.subcommands(build_parser())[cmd]):
        if not arg.flag:
            out += [(arg, v, k) for v, k in [p for p in spec_pools(arg, fx, cmd) if p[1] != OK][:per_arg]]
    return out


def one_bad_case(fx: Fixtures, workdir: Path, cmd: str, arg: Any, text: str, verdict: str = BAD) -> Case:
    """The command's valid base line (``BASE``) with argument ``arg`` set to ``text`` (``verdict``: BAD must fail
    by name; ANY must succeed or fail by name)."""
    case = Case([cmd], verdict)
    argv = [fx[a[1:]] if a.startswith("@") and a[1:] in fx.files else a for a in BASE[cmd]]
    argv = [_materialise(a, workdir, case) for a in argv]
    text = _materialise(text, workdir, case)
    if not arg.flags[0].startswith("-"):
        argv[0] = text  # the positional
    elif any(f in argv for f in arg.flags):
        argv[next(i for i, a in enumerate(argv) if a in arg.flags) + 1] = text
    else:
        argv += [arg.flags[-1], text]
    case.argv += argv
    case.why.append(f"{arg.flags[-1]}={text!r}")
    return case


def _combine(vs: list[str]) -> str:
    return BAD if BAD in vs else (ANY if ANY in vs else OK)


def _semantics(cmd: str, c: dict[str, tuple[str, str]], verdict: str, fx: Fixtures) -> str:
    """Cross-argument rules (docs/cli.md) that turn individually valid values into an invalid combination."""
    if verdict == BAD:
        return BAD
    val = {k: v for k, (v, _) in c.items()}
    bad = False
    model = val.get("model", "")
    if model == fx["sd.pt"] and val.get("model_class") != "snnc.zoo:DigitsMLP":
        bad = True  # a state dict needs the class it was saved from
    if model == fx["whole.pt"] and "trust_pickle" not in val:
        bad = True  # a whole pickled module needs --trust-pickle
    if cmd == "compile":
        model = val.get("model", "")
        binarize = val.get("binarize", "none")
        if model.endswith(".nir") and (int(val.get("calibrate") or 0) or int(val.get("finetune") or 0)):
            bad = True
        if binarize == "none" and ("max_drop" in val or "storage" in val or int(val.get("finetune") or 0)):
            bad = True
        if binarize not in ("none", "auto") and ("max_drop" in val or "storage" in val):
            bad = True
        if binarize != "none" and fx["nolabels.npz"] in (val.get("calib", "digits"), val.get("data", "digits")):
            bad = True  # binarization measures accuracy on the validation part of --calib and on --data
        if binarize != "none" and val.get("data") == fx["flat.npz"]:
            verdict = ANY if verdict == OK else verdict
        if model.endswith(".nir") and binarize == "fc1":  # NIR import names fused layers from the graph
            verdict = ANY
        if val.get("calibrate") and val.get("reset") == "zero":
            bad = True  # layer calibration runs subtractive-reset IF layers
        if val.get("bits") == "1":
            bad = True  # 1 bit holds no nonzero signed weight (QuantizationError)
        if val.get("method") == "qcfs" and not model.endswith(".nir"):
            bad = True  # a ReLU model has no ClipFloor: UnsupportedLayerError
        if val.get("calib") == fx["flat.npz"] and not model.endswith(".nir"):
            verdict = ANY if verdict == OK else verdict
    if cmd in ("simulate", "energy") and "calib" in val:
        bad = True  # the base graph is compiled by snnc: it records its calibration data
    if cmd == "sweep" and "qcfs" in val.get("method", ""):
        bad = True
    if cmd in ("simulate", "energy", "run", "verify") and val.get("data") == fx["flat.npz"]:
        bad = True  # the graph's input is (1, 8, 8)
    if cmd in ("simulate", "energy", "run", "sweep") and val.get("data") == fx["nolabels.npz"]:
        bad = True
    return BAD if bad else verdict


def _materialise(text: str, workdir: Path, case: Case) -> str:
    """Output placeholders become paths in this case's folder: fresh, an existing file, a folder."""
    n = len(case.outputs)
    if text.startswith("@out."):
        p = workdir / f"out{n}{text[4:]}"
        case.outputs.append((p, "fresh"))
    elif text == "@sentinel":
        p = workdir / f"prev{n}.png"
        p.write_bytes(SENTINEL)
        case.outputs.append((p, "sentinel"))
    elif text == "@outdir":
        p = workdir / f"plots{n}"
        case.outputs.append((p, "dir"))
    else:
        return text
    return str(p)


# ---- running and judging ---------------------------------------------------------------------------------------
@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float


def run_in_process(argv: list[str], cwd: Path, timeout_s: float = 300.0) -> Result:
    """``snnc.cli.main(argv)`` in folder ``cwd`` with stdout/stderr captured (``TimedOut`` after ``timeout_s``)."""
    from snnc.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)

    def alarm(signum, frame):
        raise TimedOut()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(timeout_s))
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(argv))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(here)
    return Result(rc, out.getvalue(), err.getvalue(), time.perf_counter() - t0)


def run_subprocess(argv: list[str], entry: Sequence[str], cwd: Path, timeout_s: float = 300.0) -> Result:
    """The same through a real entry point (``python -m snnc.cli`` or the ``snnc`` script)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run(list(entry) + list(argv), capture_output=True, text=True, timeout=timeout_s, env=env,
                       cwd=cwd)
    return Result(r.returncode, r.stdout, r.stderr, time.perf_counter() - t0)


def documented_codes() -> dict[int, set[str]]:
    """exit code -> the error class names that exit with it (0 and 130: no class)."""
    from snnc.ir import errors

    codes: dict[int, set[str]] = {0: set(), 130: {"interrupted"}}
    for c in vars(errors).values():
        if isinstance(c, type) and issubclass(c, errors.SnncError):
            codes.setdefault(c.exit_code, set()).add(c.__name__)
    return codes


def judge(case: Case, r: Result, fx: Fixtures, workdir: Path) -> list[str]:
    """Every broken promise of this invocation (empty: it behaved)."""
    problems = []
    codes = documented_codes()
    # warnings ("snnc: warning: ...", e.g. evaluation samples seen in calibration) may precede the one error line
    err_lines = [ln for ln in r.err.splitlines() if ln.strip() and not ln.startswith("snnc: warning: ")]
    if "Traceback" in r.err or "Traceback" in r.out:
        problems.append("traceback")
    if r.rc not in codes:
        problems.append(f"undocumented exit code {r.rc}")
    if "InternalError" in r.err:
        problems.append("InternalError")
    if r.rc != 0:
        if len(err_lines) != 1:
            problems.append(f"stderr has {len(err_lines)} lines")
        m = re.match(r"snnc: (\w+): ", err_lines[-1]) if err_lines else None
        if r.rc == 130 and err_lines == ["snnc: interrupted"]:
            pass
        elif m is None:
            problems.append("stderr is not 'snnc: <Class>: ...'")
        elif r.rc in codes and m.group(1) not in codes[r.rc] and not (r.rc == 1 and case.argv[0] == "verify"):
            problems.append(f"class {m.group(1)} does not exit with {r.rc}")
    else:
        if "--json" in case.argv:
            lines = r.out.strip().splitlines()
            try:
                ok = len(lines) == 1 and isinstance(json.loads(lines[0]), dict)
            except ValueError:
                ok = False
            if not ok:
                problems.append("--json did not print exactly one JSON object")
    if case.expect == OK and r.rc != 0:
        problems.append("a valid invocation failed")
    if case.expect == BAD and r.rc == 0:
        problems.append("an invalid invocation succeeded")
    problems += _check_outputs(case, r.rc, workdir)
    for marker in ("PWNED", "PWNED2"):
        if (fx.root / marker).exists():
            if "--trust-pickle" not in case.argv:  # trusted: the user asked for it
                problems.append(f"pickle code ran ({marker})")
            (fx.root / marker).unlink()
    return problems


def _complete(p: Path) -> bool:
    """A finished output: an NIR file that reads, a PNG/PDF/SVG with its signature."""
    data = p.read_bytes()
    if data.startswith(b"\x89HDF"):
        from snnc.ir.graph import read

        try:
            read(p)
            return True
        except Exception:
            return False
    return data.startswith((b"\x89PNG\r\n\x1a\n", b"%PDF", b"<?xml")) and len(data) > 100


def _check_outputs(case: Case, rc: int, workdir: Path) -> list[str]:
    """Every file the case left in its folder is complete (or an untouched sentinel); no temporary files; every
    output a successful command names exists."""
    problems = []
    for q in sorted(workdir.rglob("*")):
        if q.is_dir():
            continue
        if q.name.endswith(".tmp"):
            problems.append(f"temporary file left: {q.name}")
        elif q.read_bytes() != SENTINEL and not _complete(q):
            problems.append(f"half-written file: {q.relative_to(workdir)}")
    for p, kind in case.outputs:
        if rc == 0 and kind == "fresh" and not p.exists():
            problems.append(f"{p.name}: missing after success")
        if rc == 0 and kind == "sentinel" and p.read_bytes() == SENTINEL:
            problems.append(f"{p.name}: not written by a successful command")
    return problems


# ---- the bench -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subprocess", type=int, default=24, help="cases also run through the real entry points")
    ap.add_argument("--show", type=int, default=10, help="problem cases printed")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import warnings

    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="snnc_fuzz_cli_"))
    fx = fixtures(tmp / "fixtures")
    before = fx.digest()
    rng = random.Random(a.seed)
    codes, problems_seen = Counter(), Counter()
    tracebacks = internal = violations = valid_failed = shown = 0
    expects = Counter()
    t0 = time.perf_counter()
    entries = [[sys.executable, "-m", "snnc.cli"]]
    script = Path(sys.executable).with_name("snnc")
    if script.exists():
        entries.append([str(script)])
    sub_every = max(1, a.cases // max(1, a.subprocess)) if a.subprocess else 0
    systematic = [(cmd, *odd) for cmd in sorted(BASE) for odd in one_bad_values(fx, cmd)]
    print(f"{len(systematic)} one-odd-value cases (every refused or odd value of every argument), then random cases",
          flush=True)
    slowest = (0.0, "")
    per_cmd: Counter = Counter()
    per_cmd_n: Counter = Counter()
    for i in range(a.cases):
        work = tmp / f"case{i % 50}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        case = one_bad_case(fx, work, *systematic[i]) if i < len(systematic) else invocation(RandomDraw(rng), fx, work)
        expects[case.expect] += 1
        via_sub = sub_every and i % sub_every == sub_every // 2
        try:
            r = run_subprocess(case.argv, entries[(i // sub_every) % len(entries)], work) if via_sub else \
                run_in_process(case.argv, work)
        except (TimedOut, subprocess.TimeoutExpired):
            r = Result(-1, "", "timed out", 300.0)
        per_cmd[case.argv[0]] += r.seconds
        per_cmd_n[case.argv[0]] += 1
        if r.seconds > slowest[0]:
            slowest = (r.seconds, " ".join(case.argv))
        codes[r.rc] += 1
        probs = judge(case, r, fx, work) if r.rc != -1 else ["timed out"]
        tracebacks += "traceback" in probs
        internal += "InternalError" in probs
        valid_failed += "a valid invocation failed" in probs
        violations += bool(probs)
        for p in probs:
            problems_seen[re.sub(r"\d+", "N", p.split(":")[0])] += 1
        if probs and shown < a.show:
            shown += 1
            print(f"[{i}] {'subprocess ' if via_sub else ''}snnc {' '.join(case.argv)}\n    expect {case.expect} "
                  f"({'; '.join(case.why) or 'all valid'}) -> rc {r.rc}: {probs}\n    stderr: "
                  f"{r.err.strip()[-600:]!r}", flush=True)
        if (i + 1) % 500 == 0:
            print(f"  {i + 1} cases, {time.perf_counter() - t0:.0f} s, violations {violations}", flush=True)
    changed = [n for n, h in fx.digest().items() if before.get(n) != h]
    if changed:
        violations += 1
        print(f"input fixtures modified: {changed}")
    secs = time.perf_counter() - t0
    print(f"expectations: {dict(expects)}; problems: {dict(problems_seen) or 'none'}")
    print(f"slowest case {slowest[0]:.1f} s: snnc {slowest[1]}")
    print("seconds per command: " + ", ".join(f"{c} {per_cmd[c]:.0f} s / {per_cmd_n[c]}" for c in sorted(per_cmd)))
    shutil.rmtree(tmp, ignore_errors=True)
    dist = " ".join(f"rc_{c}={n}" for c, n in sorted(codes.items()))
    print(f"cases={a.cases} tracebacks={tracebacks} internal={internal} violations={violations} "
          f"valid_failed={valid_failed} subprocess={a.subprocess and a.cases // sub_every} seconds={secs:.0f} {dist}")
    return 0 if violations == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
