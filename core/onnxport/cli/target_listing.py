"""What `onnxport targets` shows: each target's providers, passes and budgets."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from onnxport.host import PluginHost
from onnxport.report.formatting import table


def target_listing(host: PluginHost) -> list[dict[str, Any]]:
    rows = []
    for entry in host.registrations("target").values():
        target = entry.record
        picks = ""
        if target.resolve is not None:
            name, why = target.resolve()
            picks = f"{name} ({why})"
        rows.append({
            "name": target.name,
            "description": target.description,
            "plugin": entry.plugin,
            "enabled": entry.enabled,
            "reason": entry.reason,
            "providers": list(target.providers),
            "allow_fallback": target.allow_fallback,
            "passes": list(target.passes),
            "quantize": dict(target.options.get("quantize", {})),
            "opset": [target.opset_min, target.opset_max],
            "tolerance": asdict(target.tolerance),
            "quantized_tolerance": asdict(target.quantized_tolerance),
            "resolves_to": picks,
        })
    return rows


def target_table(listing: list[dict[str, Any]]) -> str:
    rows = []
    for t in listing:
        providers = ">".join(p.replace("ExecutionProvider", "") for p in t["providers"])
        if t["resolves_to"]:
            providers = "as " + t["resolves_to"].split(" ")[0]
        mode = t["quantize"].get("mode", "-") if "quantize" in t["passes"] else "-"
        rows.append([t["name"], providers or "-", ",".join(t["passes"]) or "-", mode,
                     t["plugin"]])
    lines = [table(["target", "providers", "passes", "int8", "from"], rows), ""]
    for t in listing:
        what = f"picks {t['resolves_to']} here" if t["resolves_to"] else t["description"]
        lines.append(f"{t['name']}: {what}")
    return "\n".join(lines)
