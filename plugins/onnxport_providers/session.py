"""An onnxruntime session behind the RunSession interface, reporting what really ran."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from onnxport.records import RunOptions

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
           "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OrtSession:
    def __init__(self, model_path: Path, options: RunOptions):
        import onnxruntime as ort

        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3  # errors only: warnings go to the report
        session_options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _LEVELS[options.graph_optimization_level])
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        if not options.spin_wait:
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = set(ort.get_available_providers())
        wanted = [p for p in options.providers if p in available]
        if "CPUExecutionProvider" not in wanted:
            wanted.append("CPUExecutionProvider")
        providers = [(p, dict(options.provider_options.get(p, {}))) for p in wanted]
        self.session = ort.InferenceSession(str(model_path), session_options,
                                            providers=providers)
        self.requested = list(options.providers)
        self.providers = list(self.session.get_providers())
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        outputs = self.session.run(None, {name: feeds[name] for name in self.input_names})
        return dict(zip(self.output_names, outputs))

    def close(self) -> None:
        self.session = None
