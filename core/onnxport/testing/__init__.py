"""The conformance kit: run a plugin through onnxport's contract and list every rule it
breaks, each with a message that says what to fix.

    from onnxport.testing import check_backend, check_pass, check_plugin

    def test_my_backend_conforms(tmp_path):
        report = check_backend(my_plugin_module, (model, example_inputs), work_dir=tmp_path)
        assert report.ok, report          # str(report) lists every broken rule

The checks use a fresh `PluginHost` that holds only the built-in plugins the check needs
(`selection`, default "providers": the onnxruntime runner and the targets) plus the
plugin under test, so the result does not depend on what else is installed. Names are
still compared against every installed plugin, so a clash with a built-in is caught.

For isolated tests, `fresh_host()` builds such a host, and `onnxport_host` is a pytest
fixture you can import into your conftest.py::

    from onnxport.testing import onnxport_host  # noqa: F401  (a fixture)

    def test_something(onnxport_host):
        with onnxport_host.registered(MyPlugin(), "mine"):
            ...
"""

from onnxport.testing.backends import check_backend
from onnxport.testing.hosts import fresh_host, onnxport_host
from onnxport.testing.passes import check_pass
from onnxport.testing.registration import check_plugin
from onnxport.testing.reports import RULES, ConformanceError, ConformanceReport, Problem

__all__ = ["RULES", "ConformanceError", "ConformanceReport", "Problem", "check_backend",
           "check_pass", "check_plugin", "fresh_host", "onnxport_host"]
