"""From the target names a user asked for to concrete targets ready to run: `auto`
resolved, the user's pass options applied, passes and providers checked up front."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from onnxport.errors import BadInput
from onnxport.host import PluginHost
from onnxport.options import parse_options
from onnxport.records import Target


@dataclass
class ResolvedTarget:
    target: Target
    requested: str  # the name the user gave, e.g. "auto" or "rpi4"
    reason: str = ""  # why `auto` picked this one


def resolve_targets(host: PluginHost, names: tuple[str, ...],
                    pass_options: Mapping[str, Mapping[str, Any]]) -> list[ResolvedTarget]:
    resolved: dict[str, ResolvedTarget] = {}
    for name in names:
        target = host.get("target", name)
        reason = ""
        if target.resolve is not None:
            concrete, reason = target.resolve()
            target = host.get("target", concrete)
        if target.name in resolved:
            continue
        target = _with_pass_options(target, pass_options)
        _check_pass_options(host, target, pass_options)
        _check_providers(host, target)
        resolved[target.name] = ResolvedTarget(target, name, reason)
    return list(resolved.values())


def _with_pass_options(target: Target, overrides: Mapping[str, Mapping[str, Any]]) -> Target:
    if not overrides:
        return target
    options = {name: dict(values) for name, values in target.options.items()}
    for pass_name, values in overrides.items():
        options.setdefault(pass_name, {}).update(values)
    return dataclasses.replace(target, options=options)


def _check_pass_options(host: PluginHost, target: Target,
                        given: Mapping[str, Mapping[str, Any]]) -> None:
    """Every pass a target's settings name exists, and its settings fit its schema:
    a typo fails before any work, naming what is known."""
    passes = host.registrations("pass")
    for name, values in target.options.items():
        entry = passes.get(name)
        if entry is None:
            if name in target.passes and name not in given:
                continue  # a pass the target lists but no plugin provides: a warning later
            where = "--pass-option" if name in given else f"target '{target.name}'"
            raise BadInput(f"{where} names the pass '{name}', which no installed plugin "
                           "provides", "known passes: " + (", ".join(sorted(passes))
                                                           or "none"))
        schema = getattr(entry.record, "options", None)
        if schema is not None:
            parse_options(schema, values, where=f"target '{target.name}'",
                          prefix=f"{name}.")


def _check_providers(host: PluginHost, target: Target) -> None:
    """Unknown provider names are always an error; unavailable ones only when the
    target does not allow falling back."""
    runner = host.get("runner", target.runner)
    if runner.provider_info is None or not target.providers:
        return
    available, known = runner.provider_info()
    unknown = [p for p in target.providers if p not in known]
    if unknown:
        raise BadInput(f"target '{target.name}' asks for execution provider "
                       f"'{unknown[0]}', which onnxruntime does not know",
                       "known providers: " + ", ".join(known))
    missing = [p for p in target.providers if p not in available]
    if missing and not target.allow_fallback:
        raise BadInput(
            f"target '{target.name}' requires {', '.join(missing)}, which this "
            f"onnxruntime build does not have (it has {', '.join(available)})",
            "install the onnxruntime build with that provider (e.g. onnxruntime-gpu), "
            "or set allow_fallback = true for the target")


# Execution providers that run on another kind of device than the CPU: a CPU's timings
# of a model say nothing about them. (XNNPACK is a CPU library: without it the CPU
# provider runs, on the device too.)
ACCELERATORS = ("CUDAExecutionProvider", "TensorrtExecutionProvider",
                "ROCMExecutionProvider", "MIGraphXExecutionProvider",
                "DmlExecutionProvider", "CoreMLExecutionProvider", "QNNExecutionProvider",
                "WebGpuExecutionProvider")


def missing_accelerator(target: Target, ran: Sequence[str]) -> str:
    """The accelerator a target runs on (its first execution provider, one of
    ACCELERATORS) when its models ran on another provider here; else ""."""
    wanted = target.providers[0] if target.providers else ""
    return wanted if wanted in ACCELERATORS and ran and wanted not in ran else ""


def fallback_note(target: Target, ran: list[str]) -> str:
    """'asked X, ran Y' when the first provider the target wanted did not run."""
    if not target.providers or not ran or target.providers[0] in ran:
        return ""
    return (f"asked {target.providers[0]}, ran {ran[0]}: "
            f"{target.providers[0]} is not available in this onnxruntime build")
