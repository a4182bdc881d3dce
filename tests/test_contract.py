"""The contract as pluggy defines it, and the request as one conversion's own state:
wrappers and ordering work, a conversion changes nothing in the host, plugins add
options to commands, and the typed options helper checks what they receive."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import onnxport
from onnxport.cli import main
from onnxport.errors import BadInput, PluginError
from onnxport.host import PluginHost, hookimpl
from onnxport.options import option, parse_options
from onnxport.records import Option, Publisher, PublishResult, StageEvent, Target

from conftest import factory

# --------------------------------------------------------------------------- pluggy


def test_wrappers_tryfirst_and_trylast_run_in_pluggys_order():
    calls = []

    class New:
        @hookimpl(wrapper=True)
        def onnxport_stage_started(self, event):
            calls.append("new wrapper: before")
            result = yield
            calls.append("new wrapper: after")
            return result

    class Old:
        @hookimpl(hookwrapper=True)
        def onnxport_stage_started(self, event):
            calls.append("old wrapper: before")
            outcome = yield
            outcome.get_result()
            calls.append("old wrapper: after")

    class Plain:
        @hookimpl
        def onnxport_stage_started(self, event):
            calls.append("plain")

    class First:
        @hookimpl(tryfirst=True)
        def onnxport_stage_started(self, event):
            calls.append("tryfirst")

    class Last:
        @hookimpl(trylast=True)
        def onnxport_stage_started(self, event):
            calls.append("trylast")

    host = PluginHost(load_entry_points=False)
    for name, plugin in (("last", Last()), ("first", First()), ("plain", Plain()),
                         ("old", Old()), ("new", New())):
        host.register(plugin, name)
    host.call("onnxport_stage_started", event=StageEvent("load", None, "started"))
    assert calls == ["new wrapper: before", "old wrapper: before", "tryfirst", "plain",
                     "trylast", "old wrapper: after", "new wrapper: after"]


def test_a_registration_wrapper_registers_after_the_others_and_is_named_for_it():
    class Base:
        @hookimpl
        def onnxport_register_targets(self, register):
            register(Target(name="edge", description="from base"))

    class Wrapping:
        @hookimpl(wrapper=True)
        def onnxport_register_targets(self, register):
            yield  # every other plugin registers first
            register(Target(name="edge-strict", description="after the others"))

    host = PluginHost(load_entry_points=False)
    host.register(Wrapping(), "wrapping")
    host.register(Base(), "base")
    targets = host.registrations("target")
    assert list(targets) == ["edge", "edge-strict"]
    assert targets["edge"].plugin == "base" and targets["edge-strict"].plugin == "wrapping"


def test_a_wrapper_that_raises_is_named_with_its_hook():
    class Broken:
        @hookimpl(wrapper=True)
        def onnxport_stage_finished(self, event):
            yield
            raise RuntimeError("disk on fire")

    host = PluginHost(load_entry_points=False)
    host.register(Broken(), "broken")
    with pytest.raises(PluginError, match="plugin 'broken' raised in "
                                          "onnxport_stage_finished: RuntimeError: disk on fire"):
        host.call("onnxport_stage_finished", event=StageEvent("load", None, "ok"))


# --------------------------------------------------------------------------- requests


def test_a_conversion_changes_nothing_in_the_host(tmp_path):
    """Two conversions in one process (a notebook, a service): the second does not
    inherit the first one's config targets or enables."""
    host = PluginHost(selection="torch,providers")
    before = {kind: set(host.registrations(kind)) for kind in ("target", "backend")}
    config = tmp_path / "edge.toml"
    config.write_text('[targets.edge]\nbase = "cpu"\ndescription = "our gateway"\n')
    first = onnxport.convert(factory("autopilot_torch"), output=tmp_path / "one",
                             config=config, targets=["edge"], enable=["tflite"],
                             latency_runs=0, host=host)
    assert first.artifacts[0].target.name == "edge"
    assert {kind: set(host.registrations(kind)) for kind in before} == before
    assert "tflite" not in host.enabled_by_user
    with pytest.raises(BadInput, match="unknown target 'edge'"):
        onnxport.convert(factory("autopilot_torch"), output=tmp_path / "two",
                         targets=["edge"], latency_runs=0, host=host)
    assert not (tmp_path / "two").exists()


def test_a_view_sees_its_own_records_and_observers_only():
    host = PluginHost(selection="providers")
    seen = []

    class Observer:
        @hookimpl
        def onnxport_stage_started(self, event):
            seen.append(event.stage)

    edge = Target(name="edge", description="a config's target")
    view = host.view(records=[("target", edge, "config test")], observers=[Observer()])
    assert view.get("target", "edge") is edge
    assert view.registrations("target")["edge"].plugin == "config test"
    view.call("onnxport_stage_started", event=StageEvent("load", None, "started"))
    host.call("onnxport_stage_started", event=StageEvent("export", None, "started"))
    assert seen == ["load"]
    assert "edge" not in host.registrations("target")


def test_the_cli_and_the_api_build_the_same_request(tmp_path):
    """One builder: a CLI option and its API keyword give the same report settings."""
    from onnxport.flow.building import build_request

    api = build_request(factory("planner"), output=tmp_path / "a", quantize="on",
                        atol=1e-4, batch_sizes=[1, 2], classifiers=["output"],
                        pass_options={"quantize": {"per_channel": True}})
    assert api.pass_options == {"quantize": {"per_channel": True, "mode": "on"}}
    assert api.verification.tolerance.atol == 1e-4
    assert api.verification.tolerance.rtol == onnxport.Tolerance().rtol
    assert api.source.kind == "factory"  # nothing ran yet
    with pytest.raises(BadInput, match="--latency-runs -1: must be a whole number >= 0"):
        build_request(factory("planner"), output=tmp_path / "b", latency_runs=-1)
    with pytest.raises(BadInput, match="--atol -1"):
        build_request(factory("planner"), output=tmp_path / "b", atol=-1)
    with pytest.raises(BadInput, match="not a safe name"):
        build_request(factory("planner"), output=tmp_path / "b", name="../escape")


# --------------------------------------------------------------------------- options


class _Shelf:
    """A publisher whose plugin adds its own option to `publish` and `convert`."""

    def __init__(self):
        self.requests = []

    @hookimpl
    def onnxport_add_options(self, options):
        options.add(Option(flags=("--shelf",), help="which shelf to put it on",
                           commands=("convert", "publish"), metavar="NAME"))

    @hookimpl
    def onnxport_register_publishers(self, register):
        register(Publisher(name="shelf", description="keeps requests", schemes=("shelf",),
                           publish=lambda request: self.requests.append(request) or
                           PublishResult(uri=f"shelf://{request.name}")))


def test_a_plugin_adds_an_option_that_reaches_its_publisher(tmp_path, capsys):
    host = PluginHost(selection="torch,providers")
    out = tmp_path / "out"
    onnxport.convert(factory("autopilot_torch"), output=out, latency_runs=0, host=host)
    shelf = _Shelf()
    with host.registered(shelf, "shelf"):
        with pytest.raises(SystemExit):
            main(["publish", "--help"], host=host)
        assert "--shelf NAME" in capsys.readouterr().out
        assert main(["publish", str(out), "--to", "shelf://x", "--shelf", "top"],
                    host=host) == 0
    (request,) = shelf.requests
    assert request.options["shelf"] == "top" and request.options["force"] is False
    assert "cpu/manifest.json" in request.files and "report.json" in request.files


def test_an_option_that_clashes_or_names_no_command_is_refused(capsys):
    class Clash:
        @hookimpl
        def onnxport_add_options(self, options):
            options.add(Option(flags=("--force",), type=bool, help="mine",
                               commands=("publish",)))

    class Nowhere:
        @hookimpl
        def onnxport_add_options(self, options):
            options.add(Option(flags=("--x",), help="", commands=("nosuch",)))

    host = PluginHost(selection="providers")
    with host.registered(Clash(), "clash"):
        assert main(["plugins"], host=host) == onnxport.ExitCode.PLUGIN_ERROR
    assert "plugin 'clash' adds --force to 'publish', which has it already" in \
        capsys.readouterr().err
    with host.registered(Nowhere(), "nowhere"):
        assert main(["plugins"], host=host) == onnxport.ExitCode.PLUGIN_ERROR
    assert "plugin 'nowhere' adds --x to the command 'nosuch', which does not exist" in \
        capsys.readouterr().err


def test_the_core_commands_are_a_plugin_and_a_clash_names_both():
    class Convert:
        @hookimpl
        def onnxport_register_commands(self, cli):
            cli.add(onnxport.Command(name="convert", help="", configure=lambda p: None,
                                     run=lambda a: 0))

    host = PluginHost(selection="providers")
    assert "onnxport_register_commands" in host.infos["core"].hooks
    with host.registered(Convert(), "mine"):
        with pytest.raises(PluginError, match="plugin 'mine' adds the command 'convert', "
                                              "which plugin 'core' already added"):
            from onnxport.cli import build_parser

            build_parser(host)


@dataclass(frozen=True)
class _Settings:
    timeout: float = option(300.0, above=0, help="seconds")
    retries: int = option(5, minimum=1)
    mode: str = option("auto", choices=("on", "off", "auto"))
    names: tuple[str, ...] = option(())
    limit: int | None = option(None)
    strict: bool = option(False)
    size: int = option(8, convert=lambda v: v if v % 2 == 0 else
                       (_ for _ in ()).throw(ValueError("must be even", "try 8")))


def test_typed_options_check_names_types_choices_and_bounds():
    parsed = parse_options(_Settings, {"timeout": 5, "names": ["a", "b"], "limit": None},
                           where="target 'cpu'", prefix="x.")
    assert parsed.timeout == 5.0 and isinstance(parsed.timeout, float)
    assert parsed.names == ("a", "b") and parsed.limit is None
    cases = {
        "bogus": (1, "target 'cpu': unknown option x.bogus: known options: limit, mode, "
                     "names, retries, size, strict, timeout"),
        "timeout": ("5", "x.timeout must be a number, not '5'"),
        "retries": (True, "x.retries must be a whole number, not True"),
        "mode": ("fast", "x.mode must be one of on, off, auto, not 'fast'"),
        "names": ([1], "x.names must be a list of strings, not [1]"),
        "strict": ("yes", "x.strict must be true or false, not 'yes'"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(BadInput) as caught:
            parse_options(_Settings, {key: value}, where="target 'cpu'", prefix="x.")
        assert message in caught.value.one_line(), key
    with pytest.raises(BadInput, match="x.timeout must be above 0, not 0"):
        parse_options(_Settings, {"timeout": 0}, where="t", prefix="x.")
    with pytest.raises(BadInput) as odd:
        parse_options(_Settings, {"size": 3}, where="t", prefix="x.")
    assert odd.value.one_line() == "t: x.size must be even: try 8"


def test_typed_options_read_text_from_a_command_line():
    parsed = parse_options(_Settings, {"timeout": "2.5", "retries": "3", "strict": "yes",
                                       "names": "a, b", "limit": ""},
                           where="s3", prefix="s3.", text=True)
    assert (parsed.timeout, parsed.retries, parsed.strict, parsed.names, parsed.limit) == \
        (2.5, 3, True, ("a", "b"), None)
    with pytest.raises(BadInput, match="s3.retries must be a whole number, not 'many'"):
        parse_options(_Settings, {"retries": "many"}, where="s3", prefix="s3.", text=True)
