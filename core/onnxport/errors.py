"""Errors a user can act on, each mapped to one documented exit code.

Anything raised as an `OnnxportError` is printed as one line (message, then what to
do) with no traceback; anything else is a bug and says so.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of the `onnxport` command (documented in docs/cli.md)."""

    OK = 0
    INTERNAL = 1  # a bug in onnxport or a plugin that raised something unexpected
    BAD_INPUT = 2  # the user's source, options, data or output directory are wrong
    VERIFICATION_FAILED = 3  # a model was produced but does not match its source
    EXPORT_FAILED = 4  # the framework's exporter could not produce a model
    MISSING_DEPENDENCY = 5  # an optional package (a framework) is not installed
    PLUGIN_ERROR = 6  # a plugin is broken, clashes with another or raised


class OnnxportError(Exception):
    """Base of every error meant for the user: `message` says what, `hint` what to do."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message}: {self.hint}" if self.hint else self.message


class BadInput(OnnxportError):
    exit_code = ExitCode.BAD_INPUT


class VerificationFailed(OnnxportError):
    exit_code = ExitCode.VERIFICATION_FAILED

    def __init__(self, message: str, hint: str | None = None, result=None):
        super().__init__(message, hint)
        self.result = result  # the ConversionResult, so callers can read the figures


class ExportFailed(OnnxportError):
    exit_code = ExitCode.EXPORT_FAILED


class MissingDependency(OnnxportError):
    exit_code = ExitCode.MISSING_DEPENDENCY

    def __init__(self, package: str, extra: str, needed_for: str,
                 install: str | None = None):
        """`install`: the command for a third-party plugin's own dependencies, used
        instead of onnxport's extra."""
        super().__init__(
            f"{package} is not installed, and {needed_for} needs it",
            install or f"pip install 'onnxport[{extra}]'",
        )
        self.package = package
        self.extra = extra


class PluginError(OnnxportError):
    exit_code = ExitCode.PLUGIN_ERROR
