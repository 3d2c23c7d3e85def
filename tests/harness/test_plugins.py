"""The plugin manager: discovery, registration through the hooks, failures that name the culprit."""

import textwrap
import warnings

import pytest

from harness.errors import UserError
from harness.models import load_model
from harness.plugins import PluginLoadWarning, build_registry
from harness.types import LoadOptions


def _plugin(tmp_path, name, body):
    directory = tmp_path / "plugins"
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.py").write_text(textwrap.dedent(body))
    return directory


BACKEND_PLUGIN = """
    from harness import hookimpl
    from harness.backends.tinylm import load_random
    from harness.devices import resolve_device

    class MiniBackend:
        name = "mini"
        def claims(self, spec):
            return False
        def load(self, spec, options):
            return load_random("2.5m", spec, resolve_device("cpu"), seed=7)
        def available(self):
            return [("mini:anything", "a random 2.5m model")]

    @hookimpl
    def register_backends(register):
        register(MiniBackend())
"""

METRIC_PLUGIN = """
    from harness import hookimpl
    from harness.types import Metric

    @hookimpl
    def register_metrics(register):
        register(Metric(name="odd_tokens", unit="tokens", higher_is_better=None, description="odd ids",
                        compute=lambda ctx: sum(t % 2 for t in ctx.tokens)))
"""


def test_builtins_register_through_the_same_hooks():
    registry = build_registry()
    assert "tinylm" in registry.backends
    assert registry.owner[("backend", "tinylm")] == "harness.backends.tinylm"
    seed_nine = {
        "ttft_ms",
        "tps",
        "latency_ms",
        "tokens_generated",
        "perplexity",
        "avg_token_prob",
        "repetition_rate",
        "coherence_length",
        "vocab_diversity",
    }
    assert seed_nine <= set(registry.metrics)
    assert registry.owner[("metric", "perplexity")] == "harness.metrics.likelihood"


def test_hook_register_backends(tmp_path):
    registry = build_registry(_plugin(tmp_path, "mini_backend", BACKEND_PLUGIN))
    assert registry.owner[("backend", "mini")] == "mini_backend"
    model = load_model("mini:x", registry, LoadOptions(device="cpu"))
    assert model.info.parameters > 2_000_000 and model.encode("Hi")
    assert "backend:mini" in registry.plugins["mini_backend"].registered


def test_hook_register_metrics(tmp_path):
    registry = build_registry(_plugin(tmp_path, "odd", METRIC_PLUGIN))
    metric = registry.metric("odd_tokens")
    assert metric.level == "sample" and registry.owner[("metric", "odd_tokens")] == "odd"


def test_hook_register_report_sections(tmp_path):
    directory = _plugin(
        tmp_path,
        "section",
        """
        from harness import hookimpl
        from harness.report import ReportSection

        @hookimpl
        def register_report_sections(register):
            register(ReportSection(name="lab-notes", title="Lab notes", order=90, render=lambda ctx: "<p>notes</p>"))
    """,
    )
    registry = build_registry(directory)
    assert [s.name for s in registry.report_sections] == ["lab-notes"]


def test_hook_register_commands(tmp_path):
    import typer
    from typer.testing import CliRunner

    registry = build_registry(
        _plugin(
            tmp_path,
            "cmd",
            """
        from harness import hookimpl

        @hookimpl
        def register_commands(app):
            @app.command()
            def hello(name: str):
                print(f"hello {name}")
    """,
        )
    )
    app = typer.Typer()

    @app.command()
    def noop():  # a second command so typer keeps subcommand names
        pass

    registry.pm.hook.register_commands(app=app)
    result = CliRunner().invoke(app, ["hello", "world"])
    assert result.exit_code == 0 and "hello world" in result.output


def test_duplicate_metric_name_is_an_error_naming_both_plugins(tmp_path):
    _plugin(tmp_path, "first", METRIC_PLUGIN)
    directory = _plugin(tmp_path, "second", METRIC_PLUGIN)
    with pytest.raises(UserError, match="'first' and 'second'"):
        build_registry(directory)


def test_plugin_that_fails_to_import_is_named_and_skipped(tmp_path):
    _plugin(tmp_path, "broken", "import does_not_exist_anywhere\n")
    directory = _plugin(tmp_path, "odd", METRIC_PLUGIN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = build_registry(directory)
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginLoadWarning)]
    assert any("'broken'" in m and "does_not_exist_anywhere" in m for m in messages)
    assert "odd_tokens" in registry.metrics and "broken" not in registry.plugins


def test_misspelled_hook_fails_loudly(tmp_path):
    directory = _plugin(
        tmp_path,
        "typo",
        """
        from harness import hookimpl

        @hookimpl
        def register_metric(register):
            pass
    """,
    )
    with pytest.raises(UserError, match="typo"):
        build_registry(directory)


def test_missing_plugins_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="plugins directory not found"):
        build_registry(tmp_path / "nope")


def test_plugin_whose_hook_raises_is_skipped_and_leaves_nothing_behind(tmp_path):
    _plugin(
        tmp_path,
        "half",
        """
        from harness import hookimpl
        from harness.types import Metric

        @hookimpl
        def register_metrics(register):
            register(Metric(name="half_done", unit="", higher_is_better=None, description="x",
                            compute=lambda ctx: 0.0))
            raise RuntimeError("boom while registering")
    """,
    )
    directory = _plugin(tmp_path, "odd", METRIC_PLUGIN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = build_registry(directory)
    assert any("'half'" in str(w.message) and "boom while registering" in str(w.message) for w in caught)
    assert "half_done" not in registry.metrics and "half" not in registry.plugins
    assert "odd_tokens" in registry.metrics
