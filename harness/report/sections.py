"""Report sections: the unit both the built-in report and plugins are made of.

A plugin adds a section through the ``register_report_sections`` hook::

    from harness.hookspecs import hookimpl
    from harness.report import ReportSection, esc

    @hookimpl
    def register_report_sections(register):
        register(ReportSection(name="eos", title="EOS by model", order=45,
                               render=lambda ctx: "<ul>" + "".join(f"<li>{esc(m)}</li>" for m in ctx.models) + "</ul>"))

``render`` returns trusted HTML: a plugin must pass every run-derived string through ``esc`` and every
figure through ``ctx.figure(fig, name)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import UserError

if TYPE_CHECKING:
    import pluggy

    from harness.report.context import ReportContext

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class ReportSection:
    """One section of the HTML report.

    ``name`` is the HTML anchor and must be unique in a report; ``order`` places it (built-ins use
    0 header, 10 summary, 30 scatter plots, 40 distributions, 50 comparison, 60 sample browser;
    plugins default to 100, after them); ``render(ctx)`` returns an HTML fragment, or "" to skip the
    section (for example when it does not apply to these runs).
    """

    name: str
    title: str
    render: Callable[[ReportContext], str]
    order: int = 100

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"report section name {self.name!r}: use lowercase letters, digits, '-' and '_'")
        if not callable(self.render):
            raise TypeError(f"report section {self.name!r}: render must be callable, got {type(self.render).__name__}")


def vet_plugin_sections(
    builtins: Sequence[ReportSection], plugin_sections: Sequence[Any]
) -> tuple[list[ReportSection], list[str]]:
    """Plugin sections that can be rendered, and one message per section that cannot.

    A report written at the end of ``harness run`` must not be lost to one plugin's mistake, so a
    non-section or a second section with a taken name is left out and named on the page instead.
    """
    taken = {s.name: s.title for s in builtins}
    kept: list[ReportSection] = []
    problems: list[str] = []
    for section in plugin_sections:
        if not isinstance(section, ReportSection):
            problems.append(
                f"a plugin registered {type(section).__name__} {section!r:.60}, not a harness.report.ReportSection; "
                "it is left out"
            )
            continue
        if section.name in taken:
            problems.append(
                f"report section {section.name!r} ({section.title!r}) has the name of {taken[section.name]!r}; "
                "it is left out: rename it in its register_report_sections hook"
            )
            continue
        taken[section.name] = section.title
        kept.append(section)
    return kept, problems


def collect_sections(pm: pluggy.PluginManager) -> list[ReportSection]:
    """Sections registered by the plugins of ``pm`` through ``register_report_sections``.

    Each hook implementation is called separately so an error names the plugin that caused it.
    """
    from harness.report.builtin import builtin_sections

    collected: list[tuple[str, ReportSection]] = [("harness.report", s) for s in builtin_sections()]
    for impl in pm.hook.register_report_sections.get_hookimpls():
        plugin = impl.plugin_name

        def register(section: Any, _plugin: str = plugin) -> None:
            if not isinstance(section, ReportSection):
                raise UserError(
                    f"plugin {_plugin!r}: register_report_sections got {type(section).__name__}; "
                    "pass a harness.report.ReportSection"
                )
            for owner, existing in collected:
                if existing.name == section.name:
                    raise UserError(f"report section {section.name!r} is registered by both {owner!r} and {_plugin!r}")
            collected.append((_plugin, section))

        impl.function(**{arg: register for arg in impl.argnames})  # an impl may take no argument
    return [s for owner, s in collected if owner != "harness.report"]
