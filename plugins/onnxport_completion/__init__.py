"""Built-in plugin: `onnxport completion bash|zsh` prints a shell completion script.

The script is built from the command line's own argparse parser, so it knows every
command and every option that the installed plugins add (`--alias` once the MLflow
plugin is there, `view` once this package's Netron plugin is). Install it once:

    onnxport completion bash > ~/.local/share/bash-completion/completions/onnxport
    onnxport completion zsh > "${fpath[1]}/_onnxport"      # or: source <(onnxport completion zsh)

Importing this module imports nothing but the standard library and onnxport's records.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Command

SHELLS = ("bash", "zsh")


def _configure(parser) -> None:
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete for")


def _run(args) -> int:
    from onnxport.cli import build_parser

    from .scripts import describe, render

    print(render(args.shell, describe(build_parser(args.host))), end="")
    return 0


@hookimpl
def onnxport_register_commands(cli):
    cli.add(Command(
        name="completion", help="print a shell completion script (bash, zsh)",
        description="Print a completion script for bash or zsh, built from the commands "
        "and options installed here. bash: `onnxport completion bash > "
        "~/.local/share/bash-completion/completions/onnxport`; zsh: `onnxport completion "
        "zsh > \"${fpath[1]}/_onnxport\"` (or `source <(onnxport completion SHELL)` in "
        "the shell's rc file).",
        configure=_configure, run=_run))
