"""Built-in plugin: publish artifacts to S3-compatible object storage with boto3 (AWS S3,
MinIO, SeaweedFS, Ceph, ...) and pull them back.

Layout: `s3://BUCKET/PREFIX` receives one version per publish, every file of the
artifact kept together under it::

    PREFIX/NAME/vYYYYMMDD_HHMMSS/report.json, report.html, report.md
    PREFIX/NAME/vYYYYMMDD_HHMMSS/<target>/<name>.onnx, <target>/manifest.json
    PREFIX/NAME/vYYYYMMDD_HHMMSS/_COMPLETE     written last: the version is complete

A version without `_COMPLETE` (an upload that crashed or was interrupted) is never
pulled and never counts as "already published". Credentials come only from boto3's
standard chain (environment, shared credentials and config files, SSO, instance roles)
and are never written or logged; the endpoint from `--publish-option endpoint_url=`,
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, or the profile's `endpoint_url`.

Modules: `settings` (the options schema), `locations` (URIs, keys, version names),
`client` (boto3 client, transfer settings, errors), `versions` (bucket, versions,
markers), `files` (what to upload), `checking` (the stored bytes), `uploading`
(publish), `downloading` (pull). Importing this module does not import boto3.
"""

from __future__ import annotations

from onnxport.host import hookimpl
from onnxport.records import Option, Publisher, PublishRequest, PublishResult, Requirements

from .locations import MARKER, parse_uri
from .settings import Settings


def publish(request: PublishRequest) -> PublishResult:
    from .uploading import publish as upload

    return upload(request)


def pull(uri, destination) -> None:
    from .downloading import pull as download

    download(uri, destination)


@hookimpl
def onnxport_register_publishers(register):
    register(Publisher(
        name="s3",
        description="S3-compatible object storage (AWS S3, MinIO, SeaweedFS, ...): "
                    "s3://BUCKET/PREFIX/NAME/vYYYYMMDD_HHMMSS/",
        schemes=("s3",),
        publish=publish,
        pull=pull,
        requires=Requirements(modules=("boto3",), extra="s3"),
    ))


@hookimpl
def onnxport_add_options(options):
    options.add(Option(flags=("--create-bucket",), type=bool,
                       commands=("convert", "publish"),
                       help="S3: create the bucket if it does not exist"))


__all__ = ["publish", "pull", "parse_uri", "Settings", "MARKER"]
