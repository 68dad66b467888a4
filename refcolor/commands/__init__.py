"""Subcommands of the `refcolor` CLI beyond demo/sketch, one module each.

Each module has add_parser(subparsers) (registers its parser and sets `run` as the default) and
run(args) -> exit code. Heavy imports happen inside run, so `refcolor --help` stays fast. Expected
failures (missing files, corrupt checkpoints, unreadable images, bad options) raise CommandError or
OSError/ValueError; the CLI prints them as one line and exits non-zero, without a traceback.
"""


class CommandError(Exception):
    """A user-facing failure: printed as one line by the CLI (exit status 1)."""


COMMAND_MODULES = ("train", "colorize", "guide", "evaluate", "serve", "doctor")
