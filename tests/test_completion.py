"""`onnxport completion bash|zsh`: a completion script built from the real parser, so it
knows every command and every option the installed plugins add. The bash script is
run by bash with the COMP_* variables a shell sets; the zsh script is loaded by zsh's
completion system where zsh is installed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from onnxport.cli import build_parser
from onnxport.errors import ExitCode
from onnxport.host import PluginHost

from conftest import BIN


def _commands() -> dict:
    return build_parser(PluginHost())._subparsers._group_actions[0].choices


def _complete_bash(script: str, *words: str) -> list[str]:
    """What bash offers for `onnxport WORDS...` (the last word being completed)."""
    words_list = " ".join(f"'{w}'" for w in ("onnxport", *words))
    program = (f"{script}\nCOMP_WORDS=({words_list}); COMP_CWORD={len(words)}; "
               "_onnxport; printf '%s\\n' \"${COMPREPLY[@]}\"")
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.fixture(scope="module")
def bash_script():
    from onnxport.cli import main

    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["completion", "bash"]) == ExitCode.OK
    return out.getvalue()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_every_command_and_its_options(bash_script):
    commands = _commands()
    assert _complete_bash(bash_script, "") == list(commands)
    assert _complete_bash(bash_script, "con") == ["convert"]
    for name, sub in commands.items():
        flags = {f for a in sub._actions for f in a.option_strings if f.startswith("--")}
        offered = set(_complete_bash(bash_script, name, "--"))
        assert flags <= offered, f"{name}: {flags - offered}"
    # options plugins add, values with choices, positional choices, global options
    assert _complete_bash(bash_script, "publish", "DIR", "--al") == ["--alias"]
    assert _complete_bash(bash_script, "convert", "m.py:build", "--quantize", "") == [
        "off", "on", "auto"]
    assert _complete_bash(bash_script, "completion", "") == ["bash", "zsh"]
    assert "--debug" in _complete_bash(bash_script, "--de")
    assert "complete -o default -F _onnxport onnxport" in bash_script


@pytest.mark.skipif(shutil.which("zsh") is None,
                    reason="zsh is not installed (apt-get install zsh to run this test)")
def test_zsh_loads_the_completion_function(tmp_path):
    script = tmp_path / "_onnxport"
    done = subprocess.run([str(BIN / "onnxport"), "completion", "zsh"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    script.write_text(done.stdout)
    assert done.stdout.startswith("#compdef onnxport\n")
    for name in _commands():
        assert f"'{name}:" in done.stdout and f"        {name})\n" in done.stdout
    checked = subprocess.run(["zsh", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    loaded = subprocess.run(
        ["zsh", "-f", "-c", f"autoload -U compinit; compinit -u -d {tmp_path / 'dump'}; "
         f"source {script}; print -r -- ${{_comps[onnxport]}}"],
        capture_output=True, text=True, timeout=30)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "_onnxport"


def test_completion_needs_a_known_shell(capsys):
    from onnxport.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["completion", "fish"])
    assert exited.value.code == ExitCode.BAD_INPUT
    assert "invalid choice: 'fish'" in capsys.readouterr().err
