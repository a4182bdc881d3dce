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
    ENVIRONMENT = 7  # the machine refused: disk full, read-only, permission, path too long
    TIMEOUT = 8  # the conversion did not finish within its time limit
    CRASHED = 9  # the conversion's process died, or the model's code ended it


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


class EnvironmentProblem(OnnxportError):
    """The machine refused what onnxport had to do: a full disk, a read-only or
    forbidden directory, a path too long. Nothing about the model is wrong."""

    exit_code = ExitCode.ENVIRONMENT


class TimedOut(OnnxportError):
    exit_code = ExitCode.TIMEOUT


class Crashed(OnnxportError):
    """The conversion's process died (a native abort, an out-of-memory kill) or the
    model's own code ended it (`sys.exit`, `os._exit`): never a success."""

    exit_code = ExitCode.CRASHED


_ENVIRONMENT_ERRNOS = {
    "ENOSPC": "the disk is full", "EDQUOT": "the disk quota is used up",
    "EFBIG": "a file grew past the size this process may write",
    "EROFS": "the file system is read-only", "EACCES": "permission denied",
    "EPERM": "the operation is not permitted", "ENAMETOOLONG": "the path is too long",
    "ENOTDIR": "a part of the path is a file, not a directory",
    "EEXIST": "a file is in the way of a directory",
}


def environment_problem(exc: BaseException) -> EnvironmentProblem | None:
    """An EnvironmentProblem for an OSError the machine raised (anywhere in `exc`'s
    chain, e.g. a full disk inside an exporter), else None."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno is not None:
            name = errno.errorcode.get(exc.errno, "")
            if name in _ENVIRONMENT_ERRNOS:
                where = f" writing {exc.filename}" if exc.filename else ""
                return EnvironmentProblem(
                    f"{_ENVIRONMENT_ERRNOS[name]}{where} ({name})",
                    "free space, or choose a writable directory or a shorter path that "
                    "goes through directories only, then run again")
        exc = exc.__cause__ or exc.__context__
    return None


def error_for(exit_code: int, message: str, hint: str | None = None) -> OnnxportError:
    """An error with this exit code: how a failure that happened in another process (a
    worker) is raised again in the caller's."""
    kinds = {int(c.exit_code): c for c in (BadInput, VerificationFailed, ExportFailed,
                                            PluginError, EnvironmentProblem, TimedOut,
                                            Crashed)}
    kind = kinds.get(int(exit_code))
    error = kind(message, hint) if kind is not None else OnnxportError(message, hint)
    if kind is None:
        error.exit_code = ExitCode(exit_code) if exit_code in ExitCode._value2member_map_ \
            else ExitCode.INTERNAL
    return error
