"""The `podrec` command. Each module in ``podrec_assets/commands/`` adds its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from podrec_assets import commands as commands_package


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podrec",
        description="podrec: podcast recommendations as a Dagster asset graph. Configuration comes from "
        "PODREC_* environment variables or .env (see `podrec settings`).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_info in sorted(pkgutil.iter_modules(commands_package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands_package.__name__}.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear one-line error for the known failures, a traceback otherwise
        from podrec_assets.local.processes import ServiceError

        if isinstance(exc, (ServiceError, ValueError, FileNotFoundError)):
            print(f"podrec: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
