"""The ``snnc`` command line. Subcommands live in ``snnc.commands.*`` modules, each exposing
``COMMANDS = [(name, help, add_arguments, run)]``; they are discovered at start-up. Their arguments are declared
with ``snnc.argspec`` (type, range, choices, files, device), checked while parsing and, across arguments, before
the command runs.

Every outcome is one exit code (docs/cli.md): 0 success; an error derived from ``SnncError`` prints one line
``snnc: <Class>: <message>`` on stderr and exits with the class's code (a malformed command line is a
``UsageError``, 2); any other exception that escapes a command is reported the same way as ``InternalError``
(70), a bug to report; Ctrl-C exits 130. ``--debug`` shows the traceback instead of the one line. Python warnings
raised while a command runs are printed one line each (``snnc: warning: ...``) when it succeeds, dropped when it
fails (``--debug`` shows them as they come)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings
from typing import Callable, NoReturn

from snnc.ir.errors import InternalError, SnncError, UsageError, one_line


class Parser(argparse.ArgumentParser):
    """argparse with its errors raised as ``UsageError`` (one line, exit 2) instead of usage text and exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _discover() -> list[tuple[str, str, Callable, Callable]]:
    import snnc.commands as pkg

    cmds = []
    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{pkg.__name__}.{m.name}")
        cmds.extend(getattr(mod, "COMMANDS", []))
    return cmds


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="snnc", description="Compile trained torch ANNs into integer SNNs (NIR) for Loihi-style "
               "hardware; simulate bit-accurately; verify against Lava. Exit codes: docs/cli.md.")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name, help_, add_args, run in _discover():
        sp = sub.add_parser(name, help=help_, description=help_)
        add_args(sp)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.set_defaults(_run=run)
    return p


def _run(argv: list[str] | None) -> int:
    from snnc import argspec

    args = build_parser().parse_args(argv)
    argspec.check(args)
    return int(args._run(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Run one snnc command line (``argv`` without the program name; None: ``sys.argv[1:]``); return its exit
    code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    caught: list[warnings.WarningMessage] = []
    try:
        if debug:
            return _run(argv)
        with warnings.catch_warnings(record=True) as caught:
            rc = _run(argv)
        for w in caught:
            print(f"snnc: warning: {w.category.__name__}: {one_line(w.message, 300)}", file=sys.stderr)
        return rc
    except SystemExit as e:  # --help prints and exits 0; a library calling sys.exit
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        print("snnc: interrupted", file=sys.stderr)
        return 130
    except SnncError as e:
        if debug:
            raise
        print(f"snnc: {type(e).__name__}: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # a bug: one line instead of a traceback, with its own exit code
        if debug:
            raise
        print(f"snnc: {InternalError.__name__}: {type(e).__name__}: {one_line(e, 300)} (run with --debug for the "
              "traceback; please report)", file=sys.stderr)
        return InternalError.exit_code
    finally:
        from snnc.commands._common import forget

        forget()


if __name__ == "__main__":
    sys.exit(main())
