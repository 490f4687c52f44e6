"""Every argument of the snnc command line declared once: its type, range, choices, the file it must name, the
folder an output needs, the torch device it names; and the checks across arguments that run before any work.

A command declares an argument with ``add(parser, "--batch", Int(lo=1), default=360, help=...)``. The spec is the
argparse ``type``: argparse calls it on the text (and on a string default), so a bad value is refused while the
command line is parsed, by a named error naming the argument -- ``UsageError`` (exit 2) for a malformed value, the
domain's error for a file or a device (``DataError`` for a missing data/model file, ``NIRFileError`` for a missing
graph, ``BackendError`` for a device this machine lacks). ``constrain(parser, fn)`` adds a check over several
arguments and the files they name (a graph and the data it must fit, a model that must load safely); ``check``
runs them after parsing, before the command. ``arguments`` lists a parser's arguments with their specs (for the
CLI fuzzer and the reference page docs/cli.md)."""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from snnc.ir.errors import BackendError, DataError, SnncError, UsageError

# T beyond this is refused: a run lasts T + depth steps, one Python loop iteration each
MAX_STEPS = 1_000_000


@dataclass(frozen=True)
class Spec:
    """Converts one argument's text to its value, or raises a named error naming the argument (``name``)."""

    name: str = ""

    def __call__(self, text: str) -> Any:
        raise NotImplementedError

    def refuse(self, why: str, text: Any, cls: type[SnncError] = UsageError) -> None:
        raise cls(f"{self.name}: {why}, got {text!r}")

    def describe(self) -> str:
        """What the argument accepts, for docs/cli.md."""
        return ""


@dataclass(frozen=True)
class Int(Spec):
    """An integer in [lo, hi] (either bound optional)."""

    lo: int | None = None
    hi: int | None = None

    def __call__(self, text: str) -> int:
        s = str(text).strip()
        if not re.fullmatch(r"[+-]?\d+", s):
            self.refuse(f"expected an integer{self._range()}", text)
        v = int(s)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            self.refuse(f"must be an integer{self._range()}", text)
        return v

    def _range(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f" in {self.lo}..{self.hi}"
        if self.lo is not None:
            return f" >= {self.lo}"
        return f" <= {self.hi}" if self.hi is not None else ""

    def describe(self) -> str:
        return f"integer{self._range()}"


@dataclass(frozen=True)
class Float(Spec):
    """A finite number in [lo, hi] (``open_lo``: lo itself excluded)."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False

    def __call__(self, text: str) -> float:
        try:
            v = float(str(text).strip())
        except ValueError:
            v = None
        if v is None or not math.isfinite(v):
            self.refuse(f"expected a finite number{self._range()}", text)
        if (self.lo is not None and (v < self.lo or (self.open_lo and v == self.lo))) or \
                (self.hi is not None and v > self.hi):
            self.refuse(f"must be a number{self._range()}", text)
        return v

    def _range(self) -> str:
        lo = "" if self.lo is None else (f" > {self.lo:g}" if self.open_lo else f" >= {self.lo:g}")
        hi = "" if self.hi is None else f" <= {self.hi:g}"
        return lo + ("," if lo and hi else "") + hi

    def describe(self) -> str:
        return f"number{self._range()}"


@dataclass(frozen=True)
class Choice(Spec):
    """One of ``choices`` (exact)."""

    choices: tuple[str, ...] = ()

    def __call__(self, text: str) -> str:
        if text not in self.choices:
            self.refuse(f"choose from {', '.join(self.choices)}", text)
        return text

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)


@dataclass(frozen=True)
class OneOf(Spec):
    """The first of ``specs`` that accepts the text (``none`` or a number, say)."""

    specs: tuple[Spec, ...] = ()

    def __call__(self, text: str) -> Any:
        for s in self.specs:
            try:
                return replace(s, name=self.name)(text)
            except UsageError:
                pass
        self.refuse(f"expected {' or '.join(s.describe() for s in self.specs)}", text)

    def describe(self) -> str:
        return " or ".join(s.describe() for s in self.specs)


@dataclass(frozen=True)
class Literal(Spec):
    """Exactly ``word``, read as ``value`` (``none`` -> None)."""

    word: str = "none"
    value: Any = None

    def __call__(self, text: str) -> Any:
        if text != self.word:
            self.refuse(f"expected {self.word!r}", text)
        return self.value

    def describe(self) -> str:
        return repr(self.word)


@dataclass(frozen=True)
class List(Spec):
    """A comma-separated list of ``item`` values (``empty``: the empty string is the empty list)."""

    item: Spec = field(default_factory=Spec)
    empty: bool = False

    def __call__(self, text: str) -> list:
        parts = [t.strip() for t in str(text).split(",")]
        if parts == [""]:
            if self.empty:
                return []
            self.refuse(f"expected a comma-separated list of {self.item.describe()}", text)
        if any(p == "" for p in parts):
            self.refuse("empty item in the comma-separated list", text)
        return [replace(self.item, name=self.name)(p) for p in parts]

    def describe(self) -> str:
        return f"comma-separated list of {self.item.describe()}" + (" (may be empty)" if self.empty else "")


@dataclass(frozen=True)
class Text(Spec):
    """Free text matching ``pattern`` (described by ``what``)."""

    pattern: str = r".+"
    what: str = "text"

    def __call__(self, text: str) -> str:
        if not re.fullmatch(self.pattern, str(text)):
            self.refuse(f"expected {self.what}", text)
        return str(text)

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True)
class InFile(Spec):
    """An existing, readable file (``what``: "NIR file", "model file"); ``error``: the class a missing one raises."""

    what: str = "file"
    error: type[SnncError] = DataError

    def __call__(self, text: str) -> str:
        p = Path(text)
        where = "" if not self.name.startswith("-") else f" ({self.name})"
        if text == "":
            raise UsageError(f"{self.name}: expected a path to a {self.what}, got ''")
        if not p.exists():
            raise self.error(f"{text}: no such {self.what}{where}")
        if p.is_dir():
            raise self.error(f"{text}: is a directory, expected a {self.what}{where}")
        try:
            with open(p, "rb"):
                pass
        except OSError as e:
            raise self.error(f"{text}: cannot read the {self.what}{where} ({e.strerror or e})") from None
        return text

    def describe(self) -> str:
        return f"existing {self.what}"


@dataclass(frozen=True)
class DataSet(Spec):
    """``SOURCE[:SPLIT]`` (``snnc.dataspec``): a built-in data set (``digits``, ``digits-events``, with one of its
    splits) or an existing .npz file, with a split name. Whether an .npz holds the split is checked when it is
    loaded."""

    def __call__(self, text: str) -> str:
        from snnc.data import BUILTIN
        from snnc.dataspec import parse_spec

        if text == "":
            raise UsageError(f"{self.name}: expected 'digits', 'digits-events' or a path to an .npz, got ''")
        source, split = parse_spec(text)
        if source in BUILTIN:
            if split is not None and split not in BUILTIN[source][1]:
                self.refuse(f"{source} has splits {', '.join(BUILTIN[source][1])}", text)
            return text
        replace(InFile(what="data file", error=DataError), name=self.name)(source)
        return text

    def describe(self) -> str:
        return "'digits[:SPLIT]', 'digits-events[:SPLIT]' or an existing .npz[:SPLIT]"


@dataclass(frozen=True)
class OutFile(Spec):
    """A file to write: its folder exists and it is not a folder. Writes go through a temporary file and a rename,
    so a failed command leaves no half-written file."""

    what: str = "output file"
    error: type[SnncError] = DataError
    suffixes: tuple[str, ...] = ()  # when given, the name must end in one of them

    def __call__(self, text: str) -> str:
        if text == "":
            raise UsageError(f"{self.name}: expected a path for the {self.what}, got ''")
        p = Path(text)
        if self.suffixes and p.suffix.lower() not in self.suffixes:
            self.refuse(f"the {self.what} must end in {', '.join(self.suffixes)}", text)
        folder = p.parent if str(p.parent) else Path(".")
        if p.is_dir():
            raise self.error(f"{text}: is a directory; {self.name} names the {self.what}")
        if not folder.is_dir():
            raise self.error(f"{text}: folder {folder} does not exist ({self.name})")
        return text

    def describe(self) -> str:
        return f"{self.what} in an existing folder"


@dataclass(frozen=True)
class OutDir(Spec):
    """A folder to write into (created with its parents): not an existing file, nor inside one."""

    error: type[SnncError] = DataError

    def __call__(self, text: str) -> str:
        if text == "":
            raise UsageError(f"{self.name}: expected a folder, got ''")
        p = Path(text)
        for q in [p, *p.parents]:
            if q.exists():
                if not q.is_dir():
                    raise self.error(f"{text}: {q} is a file, not a folder ({self.name})")
                break
        return text

    def describe(self) -> str:
        return "folder (created)"


@dataclass(frozen=True)
class Device(Spec):
    """A torch device present on this machine (cpu, cuda, cuda:N, mps): ``BackendError`` otherwise."""

    def __call__(self, text: str) -> str:
        from snnc.backends.cpu.device import torch_device

        try:
            torch_device(text)
        except BackendError as e:
            raise BackendError(f"{self.name} {str(e).removeprefix('device ')}") from None
        return text

    def describe(self) -> str:
        return "cpu, cuda, cuda:N or mps, present on this machine"


@dataclass(frozen=True)
class Cluster(Spec):
    """A cluster to shard work over: ``local``, ``local:N`` (N >= 1) or ``ray://HOST:PORT`` (``snnc.cluster``'s
    parser; a ``ClusterError``, exit 10, otherwise). Whether Ray is installed and the address answers is checked
    when the command connects, before any shard runs."""

    def __call__(self, text: str) -> str:
        from snnc.cluster import parse_cluster

        parse_cluster(text)
        return text

    def describe(self) -> str:
        return "local, local:N or ray://HOST:PORT"


def add(p: argparse.ArgumentParser, *flags: str, spec: Spec | None = None, **kw: Any) -> argparse.Action:
    """``p.add_argument(*flags, **kw)`` with ``spec`` (bound to the argument's name) as its type."""
    if spec is not None:
        spec = replace(spec, name=next((f for f in flags if f.startswith("--")), flags[0]))
        if isinstance(spec, Choice) and "metavar" not in kw:
            kw["metavar"] = "{" + ",".join(spec.choices) + "}"
        kw["type"] = spec
    action = p.add_argument(*flags, **kw)
    action.spec = spec  # read by ``arguments`` (fuzzer, docs)
    return action


def constrain(p: argparse.ArgumentParser, fn: Callable[[argparse.Namespace], None]) -> None:
    """Run ``fn(args)`` after parsing, before the command: checks over several arguments and the files they name
    (raise a named error)."""
    p.set_defaults(_checks=list(p.get_default("_checks") or []) + [fn])


def check(args: argparse.Namespace) -> None:
    """Every check ``constrain`` registered for the parsed command, in order."""
    for fn in getattr(args, "_checks", None) or []:
        fn(args)


@dataclass
class Argument:
    """One argument of a command as the fuzzer and the docs see it."""

    flags: list[str]
    dest: str
    spec: Spec | None
    required: bool
    flag: bool  # takes no value (store_true)
    default: Any
    help: str


def arguments(p: argparse.ArgumentParser) -> list[Argument]:
    """The arguments of one (sub)command parser (help and --debug left out)."""
    out = []
    for a in p._actions:  # argparse keeps no public list
        if isinstance(a, argparse._HelpAction) or a.dest in ("debug", "command") or a.help == argparse.SUPPRESS:
            continue
        flags = list(a.option_strings) or [a.dest]
        out.append(Argument(flags, a.dest, getattr(a, "spec", None), bool(a.required) or not a.option_strings,
                            a.nargs == 0, a.default, a.help or ""))
    return out


def subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """name -> parser of every subcommand of the top-level parser ``p``."""
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}
