"""`onnxport publish` and `onnxport pull`: an artifact to a registry and back, checked
against its manifests both ways."""

from __future__ import annotations

from pathlib import Path

from onnxport.cli.convert import add_publish_options, publish_options
from onnxport.errors import ExitCode
from onnxport.records import Command


def publish_to(args, artifact: Path, uri: str, observers=()):
    from onnxport.artifact.publishing import publish

    return publish(artifact, uri, args.host, publish_options(args), observers)


def print_published(result) -> None:
    state = "published" if result.created else "already published"
    print(f"{state}: {result.uri}")


def _configure_publish(p) -> None:
    p.add_argument("artifact", type=Path, metavar="DIR")
    p.add_argument("--to", required=True, action="append", metavar="URI",
                   help="where to publish (repeatable)")
    add_publish_options(p)


def _run_publish(args) -> int:
    from onnxport.cli.progress import progress_observers

    observers = progress_observers(args)
    for uri in args.to:
        print_published(publish_to(args, args.artifact, uri, observers))
    return ExitCode.OK


def _configure_pull(p) -> None:
    p.add_argument("uri", metavar="URI")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")


def _run_pull(args) -> int:
    from onnxport.artifact.publishing import pull

    from onnxport.cli.progress import progress_observers

    path = pull(args.uri, args.output, args.host, overwrite=args.overwrite,
                observers=progress_observers(args))
    print(f"pulled {args.uri} into {path}")
    return ExitCode.OK


PUBLISH = Command(
    name="publish", help="publish an artifact to object storage or a registry",
    description="Check an artifact's files against its manifests, then publish it: "
    "s3://bucket/prefix (S3-compatible storage, versioned as "
    "prefix/NAME/vYYYYMMDD_HHMMSS/), mlflow://REGISTERED-MODEL (a new model version), or "
    "file:///dir.", configure=_configure_publish, run=_run_publish)

PULL = Command(
    name="pull", help="fetch a published artifact and check it",
    description="Fetch a published artifact by URI (as `onnxport publish` printed it) "
    "into DIR, and check every file against its manifest's sha256 before DIR appears.",
    configure=_configure_pull, run=_run_pull)
