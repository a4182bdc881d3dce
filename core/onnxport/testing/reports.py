"""What a conformance check found: each broken rule with what to fix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from onnxport.registry import RULES as REGISTRATION_RULES


@dataclass
class Problem:
    """One broken rule: `rule` is a stable id (see RULES), `message` what to fix."""

    rule: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}"


RULES = {
    **REGISTRATION_RULES,  # the host's own registration rules, applied the same way
    "can-load": "can_load is true for the sample, false for a foreign source, never raises",
    "claims-unloadable": "a backend that claims a source can load it",
    "load": "the sample loads",
    "export": "the export writes a file",
    "invalid-model": "the exported (or transformed) model passes onnx.checker",
    "verification": "the model passes onnxport's verification stage",
    "bad-input": "bad input raises an onnxport.OnnxportError subclass",
    "unnamed-error": "errors are raised as onnxport errors, not as bare exceptions the "
                     "host has to wrap (and which then do not say what to fix)",
    "runner": "the runner a backend names exists",
    "pass-outcome": "a pass returns a PassOutcome and writes the file it names",
}


class ConformanceError(AssertionError):
    """Raised by `ConformanceReport.raise_for_problems()`; its text lists every problem."""


@dataclass(repr=False)  # `assert report.ok, report` shows the readable text
class ConformanceReport:
    """What a check found: `problems` (broken rules), `passed` (rules checked and met),
    `notes` (what was skipped and why)."""

    plugin: str
    problems: list[Problem] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    result: Any = None  # the ConversionResult of the end-to-end conversion, if any

    @property
    def ok(self) -> bool:
        return not self.problems

    def rules(self) -> set[str]:
        """The ids of the broken rules."""
        return {p.rule for p in self.problems}

    def problem(self, rule: str, message: str) -> None:
        self.problems.append(Problem(rule, message))

    def __str__(self) -> str:
        head = (f"plugin '{self.plugin}' conforms ({len(self.passed)} checks passed)"
                if self.ok else
                f"plugin '{self.plugin}' breaks {len(self.problems)} rule(s):")
        lines = [head, *(f"  - {p}" for p in self.problems),
                 *(f"  note: {n}" for n in self.notes)]
        return "\n".join(lines)

    __repr__ = __str__

    def raise_for_problems(self) -> "ConformanceReport":
        if self.problems:
            raise ConformanceError(str(self))
        return self
