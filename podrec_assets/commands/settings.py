"""`podrec settings`: every setting, its environment variable, the value in force and what it does."""

from __future__ import annotations

import argparse

from podrec_assets.settings import get_settings


def _run(args: argparse.Namespace) -> int:
    rows = get_settings().describe()
    if args.markdown:
        print("| variable | default | meaning |\n|---|---|---|")
        for row in rows:
            print(f"| `{row['env']}` | `{row['default']}` | {row['help']} |")
        return 0
    width = max(len(r["env"]) for r in rows)
    for row in rows:
        print(f"{row['env']:<{width}}  {row['value']:<28}  {row['help']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "settings",
        help="show the configuration in force",
        description="Print every PODREC_* setting with the value in force (secrets masked).",
    )
    parser.add_argument("--markdown", action="store_true", help="print the README's table of defaults")
    parser.set_defaults(handler=_run)
