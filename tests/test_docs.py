"""The documentation cannot drift from the code: the hook reference is generated from
hookspecs.py, every hook is exercised by a test, and every CLI option and exit code is
documented."""

from __future__ import annotations

import importlib.util
import re

from onnxport import hookspecs
from onnxport.cli import build_parser
from onnxport.errors import ExitCode
from onnxport.host import PluginHost

from conftest import ROOT

HOOKS = sorted(n for n in vars(hookspecs) if n.startswith("onnxport_"))


def _reference_builder():
    spec = importlib.util.spec_from_file_location(
        "build_hook_reference", ROOT / "docs" / "build_hook_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_reference_is_generated_from_hookspecs():
    builder = _reference_builder()
    pages = builder.render()
    for path, text in pages.items():
        assert path.is_file() and path.read_text() == text, (
            f"{path.relative_to(ROOT)} is stale: run python docs/build_hook_reference.py")
    for name in HOOKS:  # a page per family, a section per hook, linked from the index
        family = ROOT / "docs" / "hooks" / f"{builder.family_of(name)}.md"
        assert f"## `{name}`" in pages[family]
        assert f"(hooks/{family.name}#{name})" in pages[ROOT / "docs" / "hooks.md"]


def test_every_record_field_a_plugin_fills_is_in_the_reference():
    from onnxport import records

    page = (ROOT / "docs" / "hooks" / "registration.md").read_text()
    for record in (records.Backend, records.Runner, records.Target, records.Pass,
                   records.Publisher, records.Requirements, records.PassOutcome):
        for field in record.__dataclass_fields__:
            assert f"| `{field}` |" in page, f"{record.__name__}.{field}"


def test_every_hook_has_a_docstring_with_an_example():
    for name in HOOKS:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "Example::" in doc and "@hookimpl" in doc, name


def test_every_hook_is_exercised_by_a_test():
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py")
                    if p.name != "test_docs.py")
    for name in HOOKS:
        assert name in tests, f"no test implements {name}"


def test_every_cli_option_and_exit_code_is_documented():
    page = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser(PluginHost())
    commands = parser._subparsers._group_actions[0].choices
    for command, sub in commands.items():
        assert f"`onnxport {command}" in page, command
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in page, f"{command} {flag} is not in docs/cli.md"
    for code in ExitCode:
        assert re.search(rf"\| {code.value} \| `{code.name}` \|", page), code


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    commands = build_parser(PluginHost())._subparsers._group_actions[0].choices
    blocks = "\n".join(re.findall(r"```(?:sh|console)\n(.*?)```", readme, re.S))
    used = set(re.findall(r"(?m)^(?:\$ )?onnxport (\w+)", blocks))
    assert used >= {"convert", "verify", "inspect", "plugins"}
    for command in used:
        assert command in commands, command
    assert "make demo" in readme and "make test" in readme


def test_plugin_guide_lists_every_conformance_rule():
    from onnxport.testing import RULES

    guide = (ROOT / "docs" / "plugin-guide.md").read_text()
    table = guide[guide.index("<!-- conformance-rules"):]
    listed = re.findall(r"(?m)^\| `([a-z-]+)` \|", table)
    assert listed == list(RULES), "docs/plugin-guide.md's rule table differs from RULES"


def test_plugin_guide_quotes_files_that_exist_and_say_what_it_quotes():
    """Every file the guide links to exists, and each line of an abridged quote (but
    `...`) is in the file it names, whitespace aside (the guide joins wrapped calls), so
    the guide cannot drift from the examples."""
    guide = (ROOT / "docs" / "plugin-guide.md").read_text()
    for link in re.findall(r"\]\(\.\./([^)#]+)\)", guide):
        assert (ROOT / link).exists(), link
    quotes = re.findall(r"```(?:python|toml)\n# (examples/\S+) \(abridged\)\n(.*?)```",
                        guide, re.S)
    assert len(quotes) >= 3
    for path, body in quotes:
        source = re.sub(r"\s+", "", (ROOT / path).read_text())
        for line in body.splitlines():
            if line.strip() and line.strip() != "...":
                assert re.sub(r"\s+", "", line) in source, f"{path}: {line.strip()}"


def test_the_targets_table_lists_each_targets_passes():
    """docs/targets.md's "Which target" table names the passes each built-in target runs."""
    from onnxport.host import default_host

    host = default_host()
    text = (ROOT / "docs" / "targets.md").read_text()
    rows = re.findall(r"^\|[^|]*\| `([\w-]+)`[^|]*\| ([a-z0-9, ]+) \|", text, re.M)
    assert len(rows) >= 6, rows
    for name, passes in rows:
        if passes == "as picked":  # `auto` resolves to one of the others
            continue
        target = host.get("target", name)
        assert tuple(p.strip() for p in passes.split(",")) == tuple(target.passes), name


def test_each_pass_options_table_lists_its_options():
    """docs/targets.md's option tables of the fuse, simplify and float16 passes name
    every option the pass accepts (and no other)."""
    import dataclasses

    from onnxport.host import default_host

    host = default_host()
    text = (ROOT / "docs" / "targets.md").read_text()
    for name in ("fuse", "simplify", "float16"):
        section = text.split(f"## The `{name}` pass", 1)[1].split("\n## ", 1)[0]
        table = section.split("| option (", 1)[1].split("\n", 1)[1]
        documented = {n for cell in re.findall(r"^\| ([^|]+) \|", table, re.M)
                      for n in re.findall(r"`(\w+)`", cell)}
        fields = {f.name for f in dataclasses.fields(host.get("pass", name).options)}
        assert documented == fields, name
