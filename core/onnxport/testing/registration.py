"""The registration rules, checked with the host's own rules (`onnxport.registry`) and
against every installed plugin's names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxport.errors import OnnxportError, PluginError
from onnxport.host import PluginHost
from onnxport.registry import KINDS, missing_requirement, record_problems
from onnxport.testing.hosts import as_plugin, name_for_plugin
from onnxport.testing.reports import ConformanceReport


def _collect(plugin: Any, name: str, report: ConformanceReport) -> list[tuple[str, Any]]:
    """Call the plugin's registration hooks alone (through pluggy, as the host does) and
    apply the host's registration rules to each record, listing every problem."""
    solo = PluginHost(load_entry_points=False)
    try:
        solo.register(plugin, name)
        solo.check_pending()
    except PluginError as exc:
        report.problem("registration", exc.one_line())
        return []
    records: list[tuple[str, Any]] = []
    for hook_name, (_, kind) in KINDS.items():
        taken: dict[str, str] = {}

        def register(record, kind=kind, taken=taken):
            problems = record_problems(kind, record, name, taken)
            for rule, message in problems:
                if rule == "duplicate-name":
                    message = f"{kind} '{record.name}' is registered twice by this plugin"
                report.problem(rule, message)
            if not any(rule in ("registration", "name") for rule, _ in problems):
                taken[record.name] = name
                records.append((kind, record))

        try:
            solo.call(hook_name, register=register)
        except OnnxportError as exc:
            cause = exc.__cause__
            if isinstance(exc, PluginError) and cause is not None and \
                    not isinstance(cause, OnnxportError):
                report.problem("unnamed-error", f"{hook_name} raised a bare "
                               f"{type(cause).__name__}: {cause}")
            else:
                report.problem("registration", f"{hook_name} raised: {exc.one_line()}")
    return records


def _check_clashes(plugin: Any, records: list[tuple[str, Any]],
                   report: ConformanceReport) -> None:
    """Compare names with every installed plugin's (the plugin itself left out)."""
    try:
        others = PluginHost()
    except OnnxportError as exc:
        report.notes.append(f"installed plugins could not all be loaded ({exc.one_line()});"
                            " names compared with the built-ins only")
        others = PluginHost(selection="")
    for other_name, other in list(others.pm.list_name_plugin()):
        if other is plugin:
            others.unregister(other_name)
    for kind, record in records:
        rname = getattr(record, "name", None)
        try:
            existing = others.registrations(kind).get(rname)
        except OnnxportError as exc:
            report.notes.append(f"installed plugins' {kind}s: {exc.one_line()}")
            continue
        if existing is not None:
            report.problem("duplicate-name", f"{kind} '{rname}' is already registered by "
                           f"installed plugin '{existing.plugin}'; pick another name")


def registration_checks(plugin: Any, name: str, report: ConformanceReport,
                  ) -> list[tuple[str, Any]]:
    before = len(report.problems)
    records = _collect(plugin, name, report)
    _check_clashes(plugin, records, report)
    if len(report.problems) == before:
        report.passed += ["registration", "name", "duplicate-name", "disabled-reason"]
    for kind, record in records:
        requires = getattr(record, "requires", None)
        if requires is not None and missing_requirement(requires):
            report.notes.append(f"{kind} '{record.name}' is unavailable here: "
                                f"{missing_requirement(requires)}")
    return records


def check_plugin(plugin: Any, *, name: str | None = None) -> ConformanceReport:
    """The registration rules only: records, names, uniqueness (against every installed
    plugin too), disabled records' reasons, and hooks that exist."""
    plugin = as_plugin(plugin)
    name = name_for_plugin(plugin, name)
    report = ConformanceReport(name)
    registration_checks(plugin, name, report)
    return report


def onnx_problem(path: Path) -> str:
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return ""
