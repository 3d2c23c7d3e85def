"""Starting the CLI stays cheap: help and argument errors must not wait for torch, scipy or pandas."""

import os
import subprocess
import sys

from tests.ceilings import HANG_S

PROBE = """
import sys
sys.argv = ["harness", *sys.argv[1:]]
from harness.cli import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "scipy", "pandas", "plotly", "transformers") if m in sys.modules)
print("HEAVY:", ",".join(heavy))
"""


def _heavy_modules_loaded(*args):
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_PLUGINS_DIR"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=HANG_S, env=env
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("HEAVY:"))
    return result, line.removeprefix("HEAVY:").strip()


def test_help_lists_every_command_without_importing_the_heavy_stack():
    result, heavy = _heavy_modules_loaded("--help")
    assert heavy == "", heavy
    for command in ("run", "report", "gate", "merge", "baseline", "suites", "plugins", "models", "serve"):
        assert command in result.stdout


def test_subcommand_help_is_cheap_too():
    for command in ("gate", "report", "merge", "serve"):
        result, heavy = _heavy_modules_loaded(command, "--help")
        assert heavy == "" and "Usage" in result.stdout, (command, heavy)


def test_a_plugin_command_from_a_plugins_dir_still_registers(tmp_path):
    (tmp_path / "greeter.py").write_text(
        "from harness import hookimpl\n\n"
        "@hookimpl\n"
        "def register_commands(app):\n"
        "    @app.command()\n"
        "    def hello(name: str):\n"
        "        print(f'hello {name}')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "harness", "hello", "world"],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env={**os.environ, "HARNESS_PLUGINS_DIR": str(tmp_path)},
    )
    assert result.returncode == 0 and "hello world" in result.stdout, result.stdout + result.stderr
