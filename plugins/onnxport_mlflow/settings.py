"""The mlflow publisher's settings: one typed schema, parsed by `onnxport.options`.

Every publisher of a command gets the same options (`convert --publish s3://..
--publish mlflow://..`), so a plain key this schema does not know is another
publisher's and is ignored; `mlflow.KEY` addresses this publisher alone, wins over a
plain `KEY`, and an unknown one is an error naming the known keys. `run_id` and `alias`
also come from this plugin's `--run-id` and `--alias`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from onnxport.options import option, parse_options

PREFIX = "mlflow."


def checked_alias(value: str) -> str:
    """An alias MLflow accepts: letters, digits, '-' and '_'; not 'latest' or v<N>."""
    if (not value.replace("_", "").replace("-", "").isalnum()
            or value.lower().startswith("v") and value[1:].isdigit()
            or value.lower() == "latest"):
        raise ValueError(f"{value!r} is not a valid MLflow alias",
                         "use letters, digits, '-' and '_', e.g. staging; not 'latest' "
                         "or v<number>")
    return value


@dataclass(frozen=True)
class Settings:
    tracking_uri: str | None = option(None, help="the tracking server (default: "
                                      "MLFLOW_TRACKING_URI)")
    registry_uri: str | None = option(None, help="the model registry, if not the tracking "
                                      "server (MLFLOW_REGISTRY_URI)")
    experiment: str | None = option(None, help="where the publishing run goes without "
                                    "--run-id (default: MLFLOW_EXPERIMENT_NAME, else "
                                    "'onnxport')")
    run_id: str | None = option(None, help="the training run to log the artifact into "
                                "and link the version to (--run-id)")
    alias: str | None = option(None, convert=checked_alias, help="an alias to point at "
                               "the version, e.g. staging (--alias)")
    description: str | None = option(None, help="the model version's description")
    retries: int = option(3, minimum=1, help="attempts to reach the server before giving "
                          "up")
    timeout: int = option(30, minimum=1, help="seconds per HTTP request")
    force: bool = option(False, help="register again although the same artifact is "
                         "there (--force)")


KEYS = frozenset(f.name for f in dataclasses.fields(Settings))


def settings_from(options: Mapping[str, Any], where: str) -> Settings:
    """The settings `options` give this publisher; empty values keep the default."""
    plain = {k: v for k, v in options.items() if k in KEYS}
    own = {k[len(PREFIX):]: v for k, v in options.items() if k.startswith(PREFIX)}
    values = {k: v for k, v in {**plain, **own}.items() if v is not None and v != ""}
    return parse_options(Settings, values, where=where, prefix=PREFIX, text=True)
