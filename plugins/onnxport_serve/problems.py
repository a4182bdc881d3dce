"""The one shape of every error the API answers:
`{"error": {"code": ..., "message": ..., "hint": ...}}` with the right HTTP status."""

from __future__ import annotations

from typing import Any, Mapping


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, hint: str | None = None,
                 headers: Mapping[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "hint": self.hint,
                          **self.extra}}


def unknown_job(job_id: str) -> ApiError:
    return ApiError(404, "unknown_job", f"there is no job {job_id!r}",
                    "GET /v1/jobs lists the jobs")


def too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the {what} is larger than this server accepts "
                    f"({limit} bytes)", "send a smaller one, or ask the operator to "
                    "raise --max-upload-mb / --max-body-kb")
