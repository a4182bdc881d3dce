"""The plugin host: discovery, selection, the registry's naming rules, attribution of
errors, lifecycle observers, plugin commands, and the no-framework-import promise."""

from __future__ import annotations

import json
import re

import pytest

from onnxport.cli import main
from onnxport.errors import BadInput, ExitCode, MissingDependency, PluginError
from onnxport.host import PluginHost, hookimpl
from onnxport.records import Backend, Command, Requirements, Runner, Target

from conftest import factory, run_process


def _backend(name: str, **changes) -> Backend:
    fields = dict(name=name, description="test backend", accepts="nothing",
                  can_load=lambda source: False, load=None, export=None, runner="x")
    fields.update(changes)
    return Backend(**fields)


class TargetPlugin:
    """Adds one target: a stand-in for a third-party plugin registered at run time."""

    def __init__(self, name: str):
        self.name = name

    @hookimpl
    def onnxport_register_targets(self, register):
        register(Target(name=self.name, description="a test target"))


def test_builtin_plugins_are_found_through_entry_points():
    host = PluginHost()
    assert {"torch", "providers"} <= set(host.infos)
    assert host.infos["torch"].builtin and host.infos["torch"].version
    assert "onnxport_register_backends" in host.infos["torch"].hooks
    assert host.get("backend", "torch").name == "torch"
    assert host.get("target", "cpu").providers == ("CPUExecutionProvider",)


def test_plugins_command_table_and_json(cli):
    table = cli("plugins")
    assert table.code == 0
    assert "torch" in table.out and "providers" in table.out and "enabled" in table.out
    listing = json.loads(cli("plugins", "--json").out)
    torch = next(p for p in listing["plugins"] if p["name"] == "torch")
    assert torch["enabled"] and torch["builtin"] and torch["version"]
    assert "onnxport_register_backends" in torch["hooks"]
    assert {"name": "cpu", "plugin": "providers"}.items() <= listing["targets"][0].items()


def test_selection_variable_restricts_plugins():
    only = PluginHost(selection="providers")
    assert set(only.infos) == {"core", "providers"}  # the core's own commands always load
    builtins = PluginHost(selection="")
    assert all(info.builtin for info in builtins.infos.values())
    with pytest.raises(PluginError, match="not installed: nosuch"):
        PluginHost(selection="providers,nosuch")


def test_selection_variable_from_the_environment():
    result = run_process("plugins", "--json", env={"ONNXPORT_PLUGINS": "providers"})
    assert result.code == 0, result.err
    assert [p["name"] for p in json.loads(result.out)["plugins"]] == ["core", "providers"]
    bad = run_process("plugins", env={"ONNXPORT_PLUGINS": "nosuch"})
    assert bad.code == ExitCode.PLUGIN_ERROR
    assert "nosuch" in bad.err and "Traceback" not in bad.err


def test_duplicate_names_are_refused_naming_both_plugins():
    host = PluginHost()
    host.register(TargetPlugin("cpu"), "imposter")
    with pytest.raises(PluginError, match="target 'cpu' is registered twice: by plugin "
                                          "'(providers|imposter)' and by plugin "
                                          "'(providers|imposter)'"):
        host.registrations("target")


def test_temporary_registration_is_removed_afterwards():
    host = PluginHost()
    with host.registered(TargetPlugin("edge-box"), "edge"):
        assert host.get("target", "edge-box").description == "a test target"
    assert "edge-box" not in host.registrations("target")


def test_unknown_hook_names_are_refused():
    class Typo:
        @hookimpl
        def onnxport_register_backendz(self, register):
            pass

    host = PluginHost(load_entry_points=False)
    with pytest.raises(PluginError, match="onnxport_register_backendz"):
        with host.registered(Typo(), "typo"):
            pass


def test_a_hook_that_raises_is_reported_with_plugin_and_hook():
    class Broken:
        @hookimpl
        def onnxport_register_runners(self, register):
            raise RuntimeError("boom")

    host = PluginHost(load_entry_points=False)
    host.register(Broken(), "broken")
    with pytest.raises(PluginError, match="plugin 'broken' raised in "
                                          "onnxport_register_runners: RuntimeError: boom"):
        host.registrations("runner")


def test_disabled_records_need_a_reason_and_missing_modules_give_one():
    class Plugin:
        def __init__(self, record):
            self.record = record

        @hookimpl
        def onnxport_register_backends(self, register):
            register(self.record)

    host = PluginHost(load_entry_points=False)
    host.register(Plugin(_backend("needy", requires=Requirements(
        modules=("no_such_module_xyz",), extra="needy"))), "needy")
    entry = host.registrations("backend")["needy"]
    assert not entry.enabled
    assert "no_such_module_xyz" in entry.reason and "onnxport[needy]" in entry.reason
    host.register(Plugin(_backend("third", requires=Requirements(
        modules=("no_such_module_xyz",), install="pip install onnxport-third"))), "third")
    assert host.registrations("backend")["third"].reason == \
        "needs no_such_module_xyz, which is not installed: pip install onnxport-third"
    with pytest.raises(MissingDependency) as missing:
        host.get("backend", "third")
    assert missing.value.one_line() == ("no_such_module_xyz is not installed, and the "
                                        "third backend needs it: pip install onnxport-third")

    silent = PluginHost(load_entry_points=False)
    silent.register(Plugin(_backend("quiet", enabled=False)), "quiet")
    with pytest.raises(PluginError, match="disabled without a reason"):
        silent.registrations("backend")


def test_wrong_record_type_and_bad_names_are_refused():
    class WrongType:
        @hookimpl
        def onnxport_register_runners(self, register):
            register(Target(name="cpu2", description="not a runner"))

    host = PluginHost(load_entry_points=False)
    host.register(WrongType(), "wrong")
    with pytest.raises(PluginError, match="registered a Target as a runner"):
        host.registrations("runner")

    class BadName:
        @hookimpl
        def onnxport_register_runners(self, register):
            register(Runner(name="Has Spaces", description="", open=None))

    host = PluginHost(load_entry_points=False)
    host.register(BadName(), "badname")
    with pytest.raises(PluginError, match="named 'Has Spaces'"):
        host.registrations("runner")


def test_observers_see_every_stage_of_a_conversion(tmp_path):
    events = []

    class Recorder:
        @hookimpl
        def onnxport_stage_started(self, event):
            events.append((event.stage, event.target, event.status))

        @hookimpl
        def onnxport_stage_finished(self, event):
            events.append((event.stage, event.target, event.status))

    import onnxport

    host = PluginHost(selection="torch,providers,onnxsim,fusion")
    with host.registered(Recorder(), "recorder"):
        onnxport.convert(factory("autopilot_torch"), output=tmp_path / "out",
                         latency_runs=0, host=host)
    assert events == [("load", None, "started"), ("load", None, "ok"),
                      ("export", None, "started"), ("export", None, "ok"),
                      ("verify", "cpu", "started"), ("verify", "cpu", "ok"),
                      ("fuse", "cpu", "started"), ("fuse", "cpu", "skipped"),
                      ("simplify", "cpu", "started"), ("simplify", "cpu", "ok"),
                      ("verify simplify", "cpu", "started"),
                      ("verify simplify", "cpu", "ok")]


def test_plugins_can_add_commands():
    seen = []

    class Hello:
        @hookimpl
        def onnxport_register_commands(self, cli):
            cli.add(Command(name="hello", help="say hello",
                            configure=lambda p: p.add_argument("who"),
                            run=lambda args: seen.append(args.who) or 0))

    host = PluginHost()
    with host.registered(Hello(), "hello"):
        assert main(["hello", "sailor"], host=host) == 0
    assert seen == ["sailor"]

    class Clash:
        @hookimpl
        def onnxport_register_commands(self, cli):
            cli.add(Command(name="convert", help="", configure=lambda p: None,
                            run=lambda a: 0))

    with host.registered(Clash(), "clash"):
        assert main(["plugins"], host=host) == ExitCode.PLUGIN_ERROR


def test_trace_variable_logs_each_hook_call():
    result = run_process("plugins", env={"ONNXPORT_TRACE": "1"})
    assert result.code == 0
    assert re.search(r"onnxport trace: onnxport_register_backends <- [\w, ]*\btorch\b",
                     result.err), result.err


@pytest.mark.parametrize("code", [
    "import onnxport",
    "import onnxport; onnxport.convert; onnxport.Backend",
    "from onnxport.cli import main; main(['plugins'])",
    "from onnxport.cli import main\ntry:\n    main(['convert', '--help'])\nexcept SystemExit:\n    pass",
])
def test_the_core_imports_no_framework(code):
    import subprocess
    import sys

    probe = (f"import sys\n{code}\n"
             "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'tf2onnx') "
             "if m in sys.modules]\nprint('HEAVY', heavy)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "HEAVY []" in done.stdout, done.stdout + done.stderr


def test_records_off_by_default_are_turned_on_explicitly():
    class OffByDefault:
        @hookimpl
        def onnxport_register_targets(self, register):
            register(Target(name="experimental", description="off by default",
                            enabled=False, disabled_reason="not tested on hardware"))

    host = PluginHost(enable=set())
    with host.registered(OffByDefault(), "off"):
        with pytest.raises(BadInput) as refused:
            host.get("target", "experimental")
        assert refused.value.one_line() == (
            "target 'experimental' is disabled: not tested on hardware: enable it with "
            "--enable experimental or ONNXPORT_ENABLE=experimental")
        assert host.view(enable=["experimental"]).get("target", "experimental").name == \
            "experimental"
        with pytest.raises(BadInput):  # the view did not change the host
            host.get("target", "experimental")
    from_env = PluginHost(enable={"experimental"})
    with from_env.registered(OffByDefault(), "off"):
        assert from_env.registrations("target")["experimental"].enabled


def test_publishers_are_chosen_by_uri_scheme(tmp_path):
    import onnxport
    from onnxport.errors import BadInput as Bad
    from onnxport.records import Publisher, PublishResult

    published = []

    class Memory:
        @hookimpl
        def onnxport_register_publishers(self, register):
            register(Publisher(
                name="memory", description="keeps what it is given", schemes=("mem",),
                publish=lambda request: published.append(request) or PublishResult(
                    uri=f"mem://{request.name}")))

    host = PluginHost()
    out = tmp_path / "out"
    onnxport.convert(factory("autopilot_torch"), output=out, latency_runs=0, host=host)
    with host.registered(Memory(), "memory"):
        result = onnxport.publish(out, "mem://shelf", host=host, alias="staging")
        assert result.uri == "mem://autopilot_torch"
        (request,) = published
        assert request.name == "autopilot_torch" and request.options["alias"] == "staging"
        assert request.manifests[0]["target"]["name"] == "cpu"
        with pytest.raises(Bad, match="no publisher handles ftp:// URIs"):
            onnxport.publish(out, "ftp://x", host=host)
        (out / "cpu" / "autopilot_torch.onnx").write_bytes(b"tampered")
        with pytest.raises(Bad, match="does not match its manifest"):
            onnxport.publish(out, "mem://shelf", host=host)
    assert len(published) == 1


def test_trace_shows_which_backend_claimed_the_source_and_which_passes_apply(tmp_path):
    """What an author debugging "why is my plugin not picked" needs to see."""
    result = run_process("convert", factory("planner"), "-o", str(tmp_path / "out"),
                         "--target", "cpu", env={"ONNXPORT_TRACE": "1"})
    assert result.code == 0, result.err
    assert f"backend torch (torch) can_load({factory('planner')}) -> True" in result.err
    assert "pass quantize applies(cpu) -> False" in result.err
