"""The MLflow model a registered version holds: the MLmodel files that make the
published artifact loadable by `mlflow.onnx.load_model("models:/NAME/1")` and
`mlflow.pyfunc.load_model("models:/NAME@ALIAS")`, written beside onnxport's own files.

What `mlflow.onnx.save_model` writes, without re-saving the model (its bytes stay those
whose sha256 the manifest holds) and without importing `mlflow.onnx` or
`mlflow.pyfunc` (they need pandas, which the `mlflow-skinny` client does not install):

    MLmodel             flavors onnx and python_function, data: TARGET/MODEL.onnx (the
                        first target's model), signature from the manifest
    requirements.txt    onnx, onnxruntime (the versions that verified it), mlflow
    python_env.yaml, conda.yaml
    TARGET/MLmodel      for every target: the same flavors with data: MODEL.onnx, so each
                        target directory is an MLflow model of its own (and the pyfunc
                        loader, which reads the MLmodel beside the model file, finds it)

Pulling removes these files again (`MLFLOW_FILES`): the pulled directory is the artifact.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

MLMODEL = "MLmodel"
ENV_FILES = ("requirements.txt", "python_env.yaml", "conda.yaml")
MLFLOW_FILES = (MLMODEL, *ENV_FILES)  # at the top; a target directory holds MLmodel only

_NUMPY = {"float32": "float32", "float": "float32", "float64": "float64",
          "double": "float64", "float16": "float16", "int64": "int64", "int32": "int32",
          "int8": "int8", "uint8": "uint8", "bool": "bool", "int16": "int16"}


def target_directories(manifests: list[dict[str, Any]], files: list[str]) -> list[str]:
    """The directory of each manifest inside the artifact ("" for an artifact that is a
    single target directory), in the manifests' order."""
    listed = [PurePosixPath(f).parent.as_posix() for f in files
              if PurePosixPath(f).name == "manifest.json"]
    directories = [("" if d == "." else d) for d in listed]
    if len(directories) != len(manifests):
        raise ValueError("the artifact's file list does not match its manifests")
    return directories


def loadable(manifests: list[dict[str, Any]]) -> bool:
    """mlflow.onnx loads ONNX models only (a TFLite artifact is registered as files)."""
    from .tags import model_format

    return bool(manifests) and all(model_format(m) == "onnx" for m in manifests)


def write_model_files(into: Path, manifests: list[dict[str, Any]], files: list[str],
                      run_id: str, artifact_path: str, name: str,
                      order: list[str] = ()) -> list[tuple[Path, str]]:
    """Write the MLflow model files into `into`; (local file, its directory in the run's
    artifact path relative to the version's root) for each. The registered model is the
    first target of `order` (the conversion's --target order, from report.json), else
    of the manifests."""
    pairs = list(zip(manifests, target_directories(manifests, files)))
    ranks = {target: rank for rank, target in enumerate(order)}
    pairs.sort(key=lambda pair: ranks.get((pair[0].get("target") or {}).get("name"),
                                          len(ranks)))
    manifests, directories = [m for m, _ in pairs], [d for _, d in pairs]
    written: list[tuple[Path, str]] = []
    first, first_dir = manifests[0], directories[0]
    top = _mlmodel(first, _join(first_dir, first["model"]), run_id, artifact_path, name,
                   env=True)
    into.mkdir(parents=True, exist_ok=True)
    (into / MLMODEL).write_text(top)
    written.append((into / MLMODEL, ""))
    for file_name, text in _environment(first).items():
        (into / file_name).write_text(text)
        written.append((into / file_name, ""))
    for manifest, directory in zip(manifests, directories):
        if not directory:
            continue  # a single-target artifact: the top MLmodel is beside the model
        own = _mlmodel(manifest, manifest["model"], run_id, _join(artifact_path, directory),
                       name, env=False)
        local = into / directory
        local.mkdir(parents=True, exist_ok=True)
        (local / MLMODEL).write_text(own)
        written.append((local / MLMODEL, directory))
    return written


def _join(*parts: str) -> str:
    return PurePosixPath(*[p for p in parts if p]).as_posix()


def _mlmodel(manifest: dict[str, Any], data: str, run_id: str, artifact_path: str,
             name: str, env: bool) -> str:
    """The MLmodel file's text: an mlflow.models.Model with the onnx and python_function
    flavors, as mlflow.onnx.save_model describes them, and the signature."""
    import yaml
    from mlflow.models import Model

    versions = manifest.get("versions") or {}
    target = manifest.get("target") or {}
    providers = list(target.get("providers") or [])
    if "CPUExecutionProvider" not in providers:
        providers.append("CPUExecutionProvider")
    model = Model(artifact_path=artifact_path, run_id=run_id,
                  metadata={"onnxport_artifact": name, "onnxport_target": target.get("name"),
                            "onnxport_version": versions.get("onnxport")})
    pyfunc: dict[str, Any] = {"loader_module": "mlflow.onnx", "data": data,
                              "python_version": versions.get("python") or _python()}
    if env:
        pyfunc["env"] = {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    model.add_flavor("python_function", **pyfunc)
    model.add_flavor("onnx", onnx_version=versions.get("onnx") or _installed("onnx"),
                     data=data, providers=providers, code=None)
    size = sum(int(f.get("bytes") or 0) for f in manifest.get("files", []))
    if size:
        model.model_size_bytes = size
    content = model.to_dict()
    signature = _signature(manifest)
    if signature:
        content["signature"] = signature
    return yaml.safe_dump(content, default_flow_style=False)


def _signature(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The MLmodel signature (tensor specs, symbolic dims as -1) from the manifest's
    inputs and outputs, in MLflow's documented JSON form: written by hand, because
    mlflow.models.signature imports pandas, which mlflow-skinny does not install.
    None when a dtype has no numpy equivalent."""
    import json

    onnx = manifest.get("onnx") or {}

    def schema(entries: list[dict[str, Any]]) -> str | None:
        specs = []
        for entry in entries:
            dtype = _NUMPY.get(str(entry.get("dtype")))
            if dtype is None:
                return None
            shape = [d if isinstance(d, int) and d >= 0 else -1
                     for d in entry.get("shape") or []]
            specs.append({"type": "tensor", "tensor-spec": {"dtype": dtype, "shape": shape},
                          "name": entry["name"]})
        return json.dumps(specs) if specs else None

    inputs, outputs = schema(onnx.get("inputs") or []), schema(onnx.get("outputs") or [])
    if not inputs or not outputs:
        return None
    return {"inputs": inputs, "outputs": outputs, "params": None}


def _environment(manifest: dict[str, Any]) -> dict[str, str]:
    """requirements.txt, python_env.yaml and conda.yaml: what loading the model needs,
    at the versions that verified it."""
    import mlflow
    import yaml

    versions = manifest.get("versions") or {}
    requirements = [f"mlflow=={mlflow.__version__}"]
    for package in ("onnx", "onnxruntime"):
        version = versions.get(package) or _installed(package)
        requirements.append(f"{package}=={version}" if version else package)
    python = versions.get("python") or _python()
    python_env = {"python": python, "build_dependencies": ["pip", "setuptools", "wheel"],
                  "dependencies": ["-r requirements.txt"]}
    conda = {"name": "mlflow-env", "channels": ["conda-forge"],
             "dependencies": [f"python={python}", "pip", {"pip": requirements}]}
    return {"requirements.txt": "\n".join(requirements) + "\n",
            "python_env.yaml": yaml.safe_dump(python_env, default_flow_style=False),
            "conda.yaml": yaml.safe_dump(conda, default_flow_style=False)}


def _installed(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _python() -> str:
    import platform

    return platform.python_version()


def remove_model_files(directory: Path) -> None:
    """After a pull: drop the MLflow model files, which no manifest lists."""
    for name in MLFLOW_FILES:
        path = directory / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            path = child / MLMODEL
            if path.is_file() and not path.is_symlink() and (child / "manifest.json").is_file():
                path.unlink()
