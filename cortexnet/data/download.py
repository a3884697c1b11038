"""Command line: ``python -m cortexnet.data.download <name> [--root DIR]`` fetches and verifies a dataset."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from cortexnet.config import CLIParser, UsageError

from .api import download_dataset
from .errors import DataError
from .sources import DATASETS


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the download command."""
    parser = CLIParser(
        prog="python -m cortexnet.data.download",
        description="Download and verify a cortexnet dataset into <root>/<name>/.",
    )
    parser.add_argument("name", choices=DATASETS.names(), help="dataset name")
    parser.add_argument(
        "--root",
        default=None,
        help="data root (default: $CORTEXNET_DATA, else datasets/ in a checkout, else the user cache)",
    )
    parser.add_argument(
        "--base-url",
        action="append",
        dest="base_urls",
        default=None,
        metavar="URL",
        help="mirror to use instead of the built-in ones (repeatable; tried in order)",
    )
    parser.add_argument(
        "--subjects",
        type=int,
        nargs="+",
        default=None,
        help="sleep-edf only: subject numbers to fetch (default: all 78 subjects, about 7 GB)",
    )
    parser.add_argument(
        "--recordings",
        type=int,
        nargs="+",
        default=None,
        help="sleep-edf only: night recordings to fetch, 1 and/or 2 (default: both)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return 0 on success, 2 (with one line ``cortexnet.data.download: error: ...`` on stderr)
    for a bad option or a failed download, 1 for an unexpected failure (one line too)."""
    prog = "cortexnet.data.download"
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        options = {}
        if args.subjects is not None:
            options["subjects"] = args.subjects
        if args.recordings is not None:
            options["recordings"] = args.recordings
        if options and args.name != "sleep-edf":
            parser.error(f"--subjects/--recordings apply to sleep-edf only, not {args.name}")
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        paths = download_dataset(args.name, args.root, base_urls=args.base_urls, options=options or None)
    except (UsageError, DataError, ValueError, TypeError, OSError) as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)  # one line, whatever the text
        return 2
    except Exception as exc:  # no traceback reaches a user
        text = " ".join(str(exc).split())[:300]
        print(
            f"{prog}: error: unexpected {type(exc).__name__}: {text} (a bug; please report it)",
            file=sys.stderr,
        )
        return 1
    if not paths:
        print(f"{args.name}: nothing to download (the data ships with the installed packages)")
    else:
        print(f"{args.name}: {len(paths)} file(s) verified under {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
