"""The s3 publisher's settings: one typed schema, parsed by `onnxport.options`.

Every publisher of a command gets the same options (`convert --publish s3://..
--publish mlflow://..`), so a plain key this schema does not know is another
publisher's and is ignored; `s3.KEY` addresses this publisher alone, wins over a plain
`KEY`, and an unknown one is an error naming the known keys.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.errors import BadInput
from onnxport.options import option, parse_options

PREFIX = "s3."
MiB = 1024 * 1024
_UNITS = {"": 1, "K": 1024, "M": MiB, "G": 1024 * MiB}


def size(value: Any) -> int:
    """Bytes from a whole number or a size such as 5MiB, 64MB, 1GB (all binary); a
    ValueError(what is wrong, what to do) for anything else (see `option`)."""
    hint = "give bytes or a size such as 5MiB, 64MB, 1GB"
    if isinstance(value, bool):
        raise ValueError(f"must be a size, not {value!r}", hint)
    if isinstance(value, int):
        number = value
    else:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?", str(value).strip(), re.I)
        if not match:
            raise ValueError(f"must be a size, not {value!r}", hint)
        unit = (match.group(2) or "B").upper().rstrip("B").rstrip("I")
        number = int(float(match.group(1)) * _UNITS[unit])
    if number <= 0:
        raise ValueError(f"must be a positive size, not {value!r}", hint)
    return number


@dataclass(frozen=True)
class Settings:
    endpoint_url: str | None = option(
        None, help="the S3 endpoint, e.g. http://minio:9000 (default: AWS_ENDPOINT_URL_S3, "
        "AWS_ENDPOINT_URL, the profile's, else AWS)")
    profile: str | None = option(None, help="the AWS profile for credentials and settings "
                                 "(default: AWS_PROFILE)")
    region: str | None = option(None, help="the region (default: AWS_REGION / the "
                                "profile's)")
    addressing_style: str | None = option(None, choices=("path", "virtual", "auto"),
                                          help="path, virtual or auto (default: "
                                          "botocore's)")
    # Any: a size arrives as bytes or as text such as "8MiB"; `size` makes it bytes
    multipart_threshold: Any = option(8 * MiB, convert=size, help="files this large or "
                                      "larger go up in parts (default 8MiB)")
    multipart_chunksize: Any = option(8 * MiB, convert=size, help="the size of each part "
                                      "(default 8MiB; S3 needs >= 5MiB)")
    max_concurrency: int = option(4, minimum=1, help="parts in flight at once")
    retries: int = option(5, minimum=1, help="attempts per request, the first included")
    connect_timeout: float = option(10.0, above=0, help="seconds")
    read_timeout: float = option(60.0, above=0, help="seconds")
    verify: str = option("auto", choices=("auto", "checksum", "download"),
                         help="auto (server SHA-256 checksums, else download), checksum, "
                         "or download")
    checksum: str = option("sha256", choices=("sha256", "off"),
                           help="sha256 (send x-amz-checksum-sha256) or off (stores "
                           "without flexible checksums; then verify downloads)")
    create_bucket: bool = option(False, help="create the bucket if it does not exist "
                                 "(--create-bucket)")
    force: bool = option(False, help="publish again although the same artifact is there "
                         "(--force)")


KEYS = frozenset(f.name for f in dataclasses.fields(Settings))


def settings_from(options: Mapping[str, Any], where: str) -> Settings:
    """The settings `options` give this publisher; empty values keep the default."""
    plain = {k: v for k, v in options.items() if k in KEYS}
    own = {k[len(PREFIX):]: v for k, v in options.items() if k.startswith(PREFIX)}
    values = {k: v for k, v in {**plain, **own}.items() if v is not None and v != ""}
    settings = parse_options(Settings, values, where=where, prefix=PREFIX, text=True)
    if settings.checksum == "off" and settings.verify == "checksum":
        raise BadInput(f"{where}: s3 options checksum=off and verify=checksum contradict "
                       "each other", "use verify=download (or auto) with checksum=off")
    return settings
