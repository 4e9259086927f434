"""`python -m retrieval COMMAND`: thin wrappers over the engine, run by the
one CLI runner (retrieval/cli/runner.py): stdout carries only the answer."""

import argparse

from retrieval.cli import bench, catalogue_commands, maintenance, options, report, runner

MODULES = (catalogue_commands, maintenance, bench, report)


def build_parser() -> tuple:
    """(parser, {command: function})."""
    parser = argparse.ArgumentParser(prog="python -m retrieval", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {}
    for module in MODULES:
        commands.update(module.add_parsers(sub))
    return parser, commands


def check_arguments(parser, args):
    """Mistakes a user can make on the command line, reported before any model loads."""
    options.check(parser, args)
    for module in MODULES:
        module.check(parser, args)


def main(argv=None) -> int:
    parser, commands = build_parser()
    return runner.run(parser, commands, argv, check_arguments)
