"""onnxport: convert PyTorch and Keras models to verified, deployment-ready ONNX.

The package is light to import: the conversion API and the plugin records load on
first use, and no framework (torch, tensorflow) is imported until a model needs it.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "convert": "api", "verify": "api", "publish": "api", "pull": "api",
    "ConversionResult": "api", "Publisher": "records", "PublishRequest": "records",
    "PublishResult": "records",
    "TargetArtifact": "api", "VerificationSettings": "conversion",
    "ConversionRequest": "conversion", "build_request": "flow.building",
    "hookimpl": "host", "PluginHost": "host",
    "Backend": "records", "Runner": "records", "Target": "records", "Pass": "records",
    "Tolerance": "records", "Source": "records", "LoadRequest": "records",
    "LoadedModel": "records", "ExportRequest": "records", "ExportResult": "records",
    "RunOptions": "records", "Requirements": "records", "PassContext": "records",
    "PassOutcome": "records", "StageEvent": "records", "Command": "records",
    "Option": "records", "parse_options": "options", "option": "options",
    "InputSpec": "records",
    "OnnxportError": "errors", "BadInput": "errors", "ExportFailed": "errors",
    "VerificationFailed": "errors", "MissingDependency": "errors",
    "PluginError": "errors", "ExitCode": "errors", "EnvironmentProblem": "errors",
    "TimedOut": "errors", "Crashed": "errors", "ConversionOutcome": "records",
    "Executor": "records", "Job": "records", "JobUpdate": "records",
    "ExecutorOptions": "records",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'onnxport' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value
