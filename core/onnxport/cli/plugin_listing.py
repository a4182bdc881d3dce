"""What `onnxport plugins` shows: each plugin, and each record it registered."""

from __future__ import annotations

from typing import Any

from onnxport.host import PluginHost
from onnxport.report.formatting import table

KINDS = ("backend", "runner", "target", "pass", "publisher")


def plugin_listing(host: PluginHost) -> dict[str, Any]:
    records: dict[str, list[dict[str, Any]]] = {}
    by_plugin: dict[str, list[Any]] = {}
    for kind in KINDS:
        for entry in host.registrations(kind).values():
            by_plugin.setdefault(entry.plugin, []).append(entry)
            records.setdefault(kind, []).append({
                "name": entry.name, "plugin": entry.plugin, "enabled": entry.enabled,
                "reason": entry.reason, "description": entry.record.description,
            })
    plugins = []
    for info in host.infos.values():
        entries = by_plugin.get(info.name, [])
        disabled = [e for e in entries if not e.enabled]
        enabled = not entries or len(disabled) < len(entries)
        plugins.append({
            "name": info.name,
            "version": info.version,
            "distribution": info.distribution,
            "builtin": info.builtin,
            "module": info.module,
            "hooks": info.hooks,
            "enabled": enabled,
            "reason": "" if enabled else "; ".join(dict.fromkeys(e.reason for e in disabled)),
            "provides": [f"{e.kind} {e.name}" for e in entries],
        })
    return {"plugins": plugins, **{f"{kind}s": records.get(kind, []) for kind in KINDS}}


def plugin_table(listing: dict[str, Any]) -> str:
    rows = []
    for p in listing["plugins"]:
        hooks = ", ".join(h.removeprefix("onnxport_") for h in p["hooks"])
        origin = "built-in" if p["builtin"] else p["distribution"]
        rows.append([p["name"], p["version"] or "-", origin,
                     "enabled" if p["enabled"] else "DISABLED", hooks])
    parts = [table(["plugin", "version", "from", "status", "hooks"], rows)]
    record_rows = []
    for kind in KINDS:
        for r in listing[f"{kind}s"]:
            state = "enabled" if r["enabled"] else f"DISABLED: {r['reason']}"
            record_rows.append([kind, r["name"], r["plugin"], state])
    if record_rows:
        parts += ["", table(["provides", "name", "plugin", "status"], record_rows)]
    return "\n".join(parts)
