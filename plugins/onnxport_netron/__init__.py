"""Built-in plugin: `onnxport view ARTIFACT|MODEL.onnx` opens a model in Netron.

Netron (the `netron` PyPI package, `pip install 'onnxport[view]'` or `pip install
netron`) serves its viewer and the model over HTTP on 127.0.0.1 only; `--browse` opens
the page in a browser, otherwise the command prints the address to open. An artifact's
model is found through its manifest by `onnxport.artifact.reading` (the one reader: the
path is confined to the target directory, no link is followed).

Importing this module does not import netron.
"""

from __future__ import annotations

from pathlib import Path

from onnxport.host import hookimpl
from onnxport.records import Command


def _configure(parser) -> None:
    parser.add_argument("model", type=Path, metavar="ARTIFACT|MODEL.onnx",
                        help="an artifact directory (or one of its target directories), "
                        "or an .onnx file")
    parser.add_argument("--target", metavar="NAME",
                        help="the target whose model to show (default: the artifact's "
                        "first target)")
    parser.add_argument("--port", type=int, metavar="N",
                        help="the port on 127.0.0.1 (default: 8080 if free, else another "
                        "free port; 0: any free port)")
    parser.add_argument("--browse", action="store_true",
                        help="open the page in the default web browser")
    parser.add_argument("--seconds", type=float, metavar="N",
                        help="stop serving after N seconds (default: until Ctrl-C)")


def _run(args) -> int:
    from .viewing import view

    return view(args.model, target=args.target, port=args.port, browse=args.browse,
                seconds=args.seconds)


@hookimpl
def onnxport_register_commands(cli):
    cli.add(Command(
        name="view", help="open a model in Netron, served on localhost",
        description="Serve ARTIFACT's model (or MODEL.onnx) with Netron on 127.0.0.1 and "
        "print the address; --browse opens it in a browser. Needs the netron package "
        "(pip install netron).",
        configure=_configure, run=_run))
