"""The ``snnc`` command line. Subcommands live in ``snnc.commands.*`` modules, each exposing
``COMMANDS = [(name, help, add_arguments, run)]``; they are discovered at start-up.

Every error derived from ``SnncError`` prints one line ``snnc: <Class>: <message>`` and exits with the class's
code (README, "Errors"); ``--debug`` shows the traceback instead."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Callable

from snnc.ir.errors import SnncError


def _discover() -> list[tuple[str, str, Callable, Callable]]:
    import snnc.commands as pkg

    cmds = []
    for m in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"{pkg.__name__}.{m.name}")
        cmds.extend(getattr(mod, "COMMANDS", []))
    return cmds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="snnc", description="Compile trained torch ANNs into integer SNNs (NIR) for "
                                "Loihi-style hardware; simulate bit-accurately; verify against Lava.")
    p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, help_, add_args, run in _discover():
        sp = sub.add_parser(name, help=help_, description=help_)
        add_args(sp)
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.set_defaults(_run=run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args._run(args)
    except SnncError as e:
        if args.debug:
            raise
        print(f"snnc: {type(e).__name__}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("snnc: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
