"""The command line: ``minitalker data|train|evaluate|generate|demo``.

Each subcommand is a thin wrapper: it parses arguments and calls one function of the package,
so everything the CLI does can be done from Python (and from the notebooks) the same way.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minitalker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="build the built-in corpus or import real recordings")
    data_cmds = data.add_subparsers(dest="data_command", required=True)
    train = sub.add_parser("train", help="train agent 1 (landmarks) or agent 2 (faces)")
    train_cmds = train.add_subparsers(dest="train_command", required=True)
    evaluate = sub.add_parser("evaluate", help="metrics and baselines for either agent")
    evaluate_cmds = evaluate.add_subparsers(dest="evaluate_command", required=True)
    # Each room adds its leaves below: p = data_cmds.add_parser(...); p.set_defaults(func=...),
    # with the handler importing its module lazily so that `minitalker --help` stays fast.
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
