"""The `onnxport` command line: the engine that builds the parser from commands and
options registered through the hooks, and runs one command.

The core's own commands (`onnxport.cli.commands`) are a plugin like any other: they
register through `onnxport_register_commands`, and plugins add options to them through
`onnxport_add_options`. Every failure the user can act on is one line on stderr and a
documented exit code; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from typing import Any, Sequence

from onnxport import __version__
from onnxport.errors import ExitCode, OnnxportError, PluginError
from onnxport.records import Command, Option

EXIT_CODES = """exit codes:
  0  success
  1  internal error (a bug: please report it with --debug output)
  2  bad input: source, options, data or output directory
  3  verification failed: the model does not match its source
  4  export failed: the framework's exporter could not produce a model
  5  missing dependency: install the extra the message names
  6  plugin error: a plugin is broken, clashes with another, or raised
  7  environment: disk full, read-only or forbidden directory, path too long
  8  timeout: the conversion did not finish within --timeout
  9  crashed: the conversion's process died, or the model's code ended it"""

ENVIRONMENT = ("environment: ONNXPORT_PLUGINS restricts the plugins loaded (empty: "
               "built-ins only); ONNXPORT_ENABLE=a,b turns on records that are off by "
               "default; ONNXPORT_TRACE=1 logs every hook call.")


def main(argv: Sequence[str] | None = None, host=None) -> int:
    """Run the command line. `host` defaults to the plugins installed in this environment,
    and `convert` then converts in a worker process; a program that passes its own host
    (with plugins registered at run time) converts in this process, where they live."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    embedded = host is not None  # a program's own host: its plugins live in this process
    try:
        if host is None:
            from onnxport.host import default_host

            host = default_host()
        parser = build_parser(host)
        args = parser.parse_args(argv)
        if not hasattr(args, "handler"):
            parser.print_help()
            return ExitCode.OK
        configure_logging(logging.ERROR if args.quiet else logging.DEBUG
                          if args.verbose > 1 else logging.INFO if args.verbose
                          else logging.WARNING)
        args.argv = argv
        args.embedded = embedded
        args.host = host
        return int(args.handler(args))
    except OnnxportError as exc:
        if debug:
            traceback.print_exc()
        print(f"onnxport: error: {exc.one_line()}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("onnxport: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `onnxport plugins | head`: the reader left, nothing wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"onnxport: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback and please report it)", file=sys.stderr)
        return int(ExitCode.INTERNAL)


def build_parser(host) -> argparse.ArgumentParser:
    """The whole parser: every registered command with every option added to it."""
    parser = argparse.ArgumentParser(
        prog="onnxport",
        description="Convert PyTorch and Keras models to verified, deployment-ready ONNX.",
        epilog=EXIT_CODES + "\n\n" + ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"onnxport {__version__}")
    _add_global_options(parser, None)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    commands = _CommandRegistry(sub, host)
    host.call("onnxport_register_commands", cli=commands)
    host.call("onnxport_add_options", options=_OptionRegistry(commands, host))
    return parser


def plugin_options(args: Any) -> dict[str, Any]:
    """The values of the options plugins added that the user gave, by `Option.key`."""
    return {key: getattr(args, key) for key in getattr(args, "plugin_options", ())
            if getattr(args, key, None) not in (None, False, [])}


# --------------------------------------------------------------------------- registries


class _CommandRegistry:
    """What `onnxport_register_commands` receives: `add(Command)` makes a subcommand."""

    def __init__(self, subparsers: Any, host):
        self.subparsers = subparsers
        self.host = host
        self.parsers: dict[str, argparse.ArgumentParser] = {}
        self.owners: dict[str, str] = {}

    def add(self, command: Command) -> None:
        plugin = self.host.calling_plugin("onnxport_register_commands")
        if command.name in self.parsers:
            raise PluginError(f"plugin '{plugin}' adds the command '{command.name}', "
                              f"which plugin '{self.owners[command.name]}' already added")
        parser = self.subparsers.add_parser(
            command.name, help=command.help, description=command.description or command.help,
            epilog=command.epilog or None,
            formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_global_options(parser, argparse.SUPPRESS)
        command.configure(parser)
        parser.set_defaults(handler=command.run, plugin_options=[])
        self.parsers[command.name] = parser
        self.owners[command.name] = plugin


class _OptionRegistry:
    """What `onnxport_add_options` receives: `add(Option)` adds it to its commands."""

    def __init__(self, commands: _CommandRegistry, host):
        self.commands = commands
        self.host = host

    def add(self, option: Option) -> None:
        plugin = self.host.calling_plugin("onnxport_add_options")
        if not isinstance(option, Option):
            raise PluginError(f"plugin '{plugin}' added a {type(option).__name__} as an "
                              "option; expected onnxport.Option")
        for name in option.commands:
            parser = self.commands.parsers.get(name)
            if parser is None:
                raise PluginError(f"plugin '{plugin}' adds {option.flags[0]} to the "
                                  f"command '{name}', which does not exist",
                                  "commands: " + ", ".join(sorted(self.commands.parsers)))
            kwargs: dict[str, Any] = {"help": option.help, "dest": option.key,
                                      "default": option.default}
            if option.type is bool:
                kwargs["action"] = "store_true"
            else:
                kwargs.update(type=option.type, metavar=option.metavar,
                              choices=option.choices,
                              action="append" if option.repeat else "store")
            try:
                parser.add_argument(*option.flags, **kwargs)
            except argparse.ArgumentError as exc:
                raise PluginError(f"plugin '{plugin}' adds {option.flags[0]} to "
                                  f"'{name}', which has it already ({exc})") from None
            parser.set_defaults(plugin_options=[
                *parser.get_default("plugin_options"), option.key])


# --------------------------------------------------------------------------- globals


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """Options that work before or after the command name (`onnxport inspect X
    --debug`); a subcommand's copy leaves the value alone unless it is given there."""
    group = parser.add_argument_group("global options")
    group.add_argument("--debug", action="store_true", default=default or False,
                       help="show tracebacks and the exporters' original errors")
    group.add_argument("-v", "--verbose", action="count", default=default or 0,
                       help="log what plugins do (-vv: in detail)")
    group.add_argument("-q", "--quiet", action="store_true", default=default or False,
                       help="print only results and errors: no progress, no warnings")


def configure_logging(level: int) -> None:
    """Plugins log through `logging.getLogger("onnxport.NAME")`: show those records on
    stderr at `level` (-q, -v, -vv). Only onnxport's loggers are touched; a conversion's
    worker process is given the same level."""
    logger = logging.getLogger("onnxport")
    logger.setLevel(level)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("onnxport: %(name)s: %(message)s"))
        logger.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (a test's capture, a
    redirected stream), not to the one of the first call."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass
