"""register_report_sections plugins and the `harness report` command (on a test Typer app)."""

from __future__ import annotations

import pluggy
import pytest
import typer
from typer.testing import CliRunner

from harness import hookspecs
from harness.errors import UserError
from harness.hookspecs import hookimpl
from harness.report import ReportSection, collect_sections, esc, write_report
from harness.report.commands import add_commands
from tests.harness.cli_result import invoke as invoke_mapped

from .conftest import Page


class EosPlugin:
    """A plugin adding a section with a table and a figure, as docs/reports.md shows."""

    @hookimpl
    def register_report_sections(self, register):
        def render(ctx):
            import plotly.graph_objects as go

            rows = "".join(
                f"<li>{esc(m)}: {len(s.model_samples(m))} samples</li>" for s in ctx.series for m in s.models
            )
            fig = go.Figure(go.Bar(x=ctx.models, y=[1] * len(ctx.models)))
            return f"<ul id='eos-list'>{rows}</ul>" + ctx.figure(fig, "eos-bar")

        register(ReportSection(name="eos-plugin", title="EOS from a plugin", render=render, order=45))


def _pm(*plugins) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("harness")
    pm.add_hookspecs(hookspecs)
    for i, plugin in enumerate(plugins):
        pm.register(plugin, name=f"plugin{i}")
    return pm


def test_plugin_section_appears_in_order(make_run, tmp_path):
    sections = collect_sections(_pm(EosPlugin()))
    assert [s.name for s in sections] == ["eos-plugin"]
    text = write_report([make_run(models=("a", "b"))], tmp_path / "r.html", sections).read_text(encoding="utf-8")
    order = [a["data-section"] for a in Page(text).find("section")]
    assert order == ["header", "summary", "scatter", "categories", "distributions", "eos-plugin", "samples"]
    assert "a: 12 samples" in text and 'href="#eos-plugin"' in text
    assert 'id="fig-eos-bar-' in text  # plugin figure drawn by the same page script


def test_duplicate_section_names_name_both_plugins():
    class Dup:
        @hookimpl
        def register_report_sections(self, register):
            register(ReportSection("summary", "mine", lambda ctx: "x"))

    with pytest.raises(UserError, match="'harness.report' and 'plugin0'"):
        collect_sections(_pm(Dup()))


def test_registering_a_non_section_is_a_clear_error():
    class Bad:
        @hookimpl
        def register_report_sections(self, register):
            register({"name": "x"})

    with pytest.raises(UserError, match="plugin0.*ReportSection"):
        collect_sections(_pm(Bad()))


def test_bad_plugin_sections_are_left_out_and_named_not_fatal(make_run, tmp_path):
    """At the end of 'harness run' a plugin's mistake must not cost the report."""
    sections = [
        ReportSection("summary", "Clash", lambda ctx: "<p id='clash'></p>"),
        {"name": "dict"},
        ReportSection("fine", "Fine", lambda ctx: "<p id='fine'></p>"),
    ]
    text = write_report([make_run()], tmp_path / "r.html", sections).read_text(encoding="utf-8")
    assert "id='fine'" in text and "id='clash'" not in text
    assert text.count('class="error plugin-problem"') == 2 and "&#x27;Clash&#x27;" in text


def test_default_provider_reads_the_plugin_registry(make_run, tmp_path, monkeypatch):
    import harness.plugins

    class FakeRegistry:
        report_sections = [ReportSection("from-registry", "From the registry", lambda ctx: "<p>reg</p>")]

    seen = []
    monkeypatch.setattr(harness.plugins, "get_registry", lambda d=None: seen.append(d) or FakeRegistry())
    app = typer.Typer()
    add_commands(app)

    @app.command("noop")
    def noop() -> None:
        pass

    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(make_run()), "-o", str(out), "--plugins-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen == [tmp_path] and 'data-section="from-registry"' in out.read_text(encoding="utf-8")


def test_section_validation():
    with pytest.raises(ValueError, match="lowercase"):
        ReportSection("Bad Name", "t", lambda ctx: "")
    with pytest.raises(TypeError):
        ReportSection("ok", "t", "not callable")  # type: ignore[arg-type]


def test_failing_plugin_section_shows_error_and_report_survives(make_run, tmp_path):
    def boom(ctx):
        raise RuntimeError("<b>kaput</b>")

    text = write_report([make_run()], tmp_path / "r.html", [ReportSection("boom", "Boom", boom)]).read_text(
        encoding="utf-8"
    )
    assert "failed to render: RuntimeError: &lt;b&gt;kaput&lt;/b&gt;" in text
    assert 'data-section="samples"' in text


def test_empty_render_skips_section(make_run, tmp_path):
    text = write_report([make_run()], tmp_path / "r.html", [ReportSection("quiet", "Quiet", lambda ctx: "")]).read_text(
        encoding="utf-8"
    )
    assert 'data-section="quiet"' not in text and "#quiet" not in text


def _app(provider=lambda plugins_dir: []) -> typer.Typer:
    app = typer.Typer()
    add_commands(app, sections_provider=provider)

    @app.command("noop")  # a second command so typer keeps 'report' as a subcommand
    def noop() -> None:
        pass

    return app


def test_cli_writes_report(make_run, tmp_path):
    out = tmp_path / "reports" / "x.html"
    result = CliRunner().invoke(_app(), ["report", str(make_run("a")), str(make_run("b")), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and str(out) in result.output and "MB" in result.output
    assert 'data-section="comparison"' in out.read_text(encoding="utf-8")


def test_cli_default_output_and_plugin_sections(make_run, tmp_path, monkeypatch):
    run = make_run("my-run")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(_app(lambda plugins_dir: collect_sections(_pm(EosPlugin()))), ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "reports" / "my-run.html").read_text(encoding="utf-8")
    assert 'data-section="eos-plugin"' in text


def test_cli_bad_directory_is_one_line_exit_2(tmp_path):
    result = invoke_mapped(_app(), ["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "not a run directory" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()
