"""``bdc-occ <verb>``: the one command line for everything that is not the node.

Each verb lives in ``bdc_occ_ros/tools/<module>.py`` with ``add_parser(subparsers)`` registering its
sub-parser and setting ``func`` (called with the parsed namespace, returns an exit code). Modules are
imported only to build the parser; heavy imports (torch, open3d, rclpy) happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bdc_occ_ros.openmp import load_system_openmp

#: Tool modules under bdc_occ_ros.tools, in the order ``bdc-occ --help`` lists them.
TOOL_MODULES: tuple[str, ...] = (
    "synth",
    "eval",
    "train",
    "complexity",
    "calib",
    "calib_check",
    "infer",
    "bag",
    "replay",
    "export",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bdc-occ", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="<verb>")
    for name in TOOL_MODULES:
        importlib.import_module(f"bdc_occ_ros.tools.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    load_system_openmp()  # before the tool modules import torch
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError) as exc:  # user errors: one clear line, no traceback
        print(f"bdc-occ {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
