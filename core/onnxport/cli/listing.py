"""`onnxport plugins` and `onnxport targets`: what is installed, what each plugin
provides, and what each target does (and why anything is off)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from onnxport.errors import ExitCode
from onnxport.host import PluginHost
from onnxport.records import Command
from onnxport.report.formatting import table
from onnxport.tolerance import to_json

KINDS = ("backend", "runner", "target", "pass", "publisher", "executor")


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
            "latency_batches": list(target.latency_batches),
            "prefer": target.prefer,
            "tolerance": to_json(target.tolerance),
            "quantized_tolerance": to_json(target.quantized_tolerance),
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


def _configure_plugins(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def _run_plugins(args) -> int:
    listing = plugin_listing(args.host)
    print(json.dumps({"format": "onnxport-plugins/1", **listing}, indent=2) if args.json
          else plugin_table(listing))
    return ExitCode.OK


def _configure_targets(p) -> None:
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="targets config (default: ./onnxport.toml, else [tool.onnxport] "
                   "in ./pyproject.toml)")
    p.add_argument("--json", action="store_true", help="print JSON")


def _run_targets(args) -> int:
    from onnxport.flow.config import configured, find_config

    found = find_config(args.config)
    host = configured(args.host, found[0] if found else None)
    listing = target_listing(host)
    print(json.dumps({"format": "onnxport-targets/1", "targets": listing}, indent=2)
          if args.json else target_table(listing))
    return ExitCode.OK


PLUGINS = Command(
    name="plugins", help="list plugins and what they provide",
    description="List every loaded plugin with its version and hooks, then every "
    "backend, runner, target, pass, publisher and executor with its state.",
    configure=_configure_plugins, run=_run_plugins)

TARGETS = Command(
    name="targets", help="list deployment targets and what each does",
    description="List every deployment target (built-in, from plugins and from the "
    "config file) with its providers, passes, INT8 mode and budget, and what `auto` "
    "picks on this machine.",
    configure=_configure_targets, run=_run_targets)
