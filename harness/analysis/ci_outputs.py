"""A comparison (harness.analysis.comparison.Comparison) for CI: JUnit XML, one test case per
metric group and per other regression, and a short Markdown summary for a job summary or a
pull-request comment.

JUnit: a regression is a failure; an inconclusive group is skipped, or a failure with
--strict; unchanged and improved groups pass; groups not comparable are skipped; timing
warnings pass, their warning in the test case's output (as does an improvement).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from typing import Any

from harness.analysis.comparison import Comparison
from harness.analysis.equivalence import IMPROVEMENT, INCONCLUSIVE, REGRESSION

SHOWN = 10  # rows per table in the short Markdown


def _label(entry: dict[str, Any]) -> str:
    n = entry.get("n_steps")
    parts = [entry.get("method"), entry.get("variant"), None if n is None else f"N={n}",
             entry.get("metric")]
    return " / ".join(str(p) for p in parts if p not in (None, ""))


def _number(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if isinstance(value, float) else "–" if value is None else str(value)


def _message(entry: dict[str, Any]) -> str:
    interval = entry.get("interval")
    span = "" if interval is None else f", interval [{_number(interval[0])}, " \
        f"{_number(interval[1])}]"
    return (f"{entry['kind']}: base {_number(entry.get('base'))}, new "
            f"{_number(entry.get('new'))}, delta {_number(entry.get('delta'))}{span}, "
            f"tolerance {_number(entry.get('tolerance'))}; {entry.get('detail', '')}")


def _case(suite: ET.Element, classname: str, name: str, outcome: str | None = None,
          message: str = "", output: str = "") -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    if outcome is not None:
        ET.SubElement(case, outcome, message=message.partition(";")[0]).text = message
    if output:
        ET.SubElement(case, "system-out").text = output


def junit_xml(result: Comparison) -> str:
    """The comparison as JUnit XML (one testsuite)."""
    suite = ET.Element("testsuite", name="wsfm-bench compare", timestamp="", time="0")
    for g in result.groups:
        outcome = {REGRESSION: "failure",
                   INCONCLUSIVE: "failure" if result.strict else "skipped"}.get(g["status"])
        text = f"{g['status']}: {_message(g)}"
        _case(suite, f"quality.{g['task']}", _label(g), outcome, text if outcome else "",
              text if g["status"] == IMPROVEMENT else "")
    for r in result.regressions:
        if r["kind"] not in ("quality", "nonfinite"):
            _case(suite, f"{r['kind']}.{r['task']}", _label(r), "failure", _message(r))
    for w in result.warnings:
        _case(suite, f"timing.{w['task']}", _label(w), output=f"warning: {_message(w)}")
    for r in result.not_comparable:
        _case(suite, f"not-comparable.{r['task']}", _label(r), "skipped", r["detail"])
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    suite.set("errors", "0")
    props = ET.Element("properties")
    for key, value in (("base", result.base), ("new", result.new), ("alpha", result.alpha),
                       ("strict", result.strict), ("exit_code", result.exit_code)):
        ET.SubElement(props, "property", name=key, value=str(value))
    suite.insert(0, props)
    if result.unfinished:
        ET.SubElement(suite, "system-err").text = "\n".join(result.unfinished)
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _table(title: str, rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [f"**{title}** ({len(rows)})", "", "| group | task | base | new | delta | interval "
           "| tolerance |", "|---|---|---|---|---|---|---|"]
    for r in rows[:SHOWN]:
        interval = r.get("interval")
        span = "–" if interval is None else f"[{_number(interval[0])}, {_number(interval[1])}]"
        group = f"{r['kind']}: {_label(r)}".replace("|", "\\|")
        out.append(f"| {group} | {r['task']} | {_number(r.get('base'))} | "
                   f"{_number(r.get('new'))} | {_number(r.get('delta'))} | {span} | "
                   f"{_number(r.get('tolerance'))} |")
    if len(rows) > SHOWN:
        out.append(f"| ... and {len(rows) - SHOWN} more (see the full comparison) | | | | | | |")
    return out + [""]


def short_markdown(result: Comparison) -> str:
    """A few lines for a CI job summary or pull-request comment: the verdict, the counts,
    the regressions and inconclusive groups (the first SHOWN of each)."""
    verdict = "FAIL" if result.exit_code else "PASS"
    lines = [f"### wsfm-bench compare: {verdict}", "",
             f"`{result.base}` -> `{result.new}`: {result.headline}; "
             f"{len(result.warnings)} timing warning(s).", ""]
    lines += [f"> **Warning:** {u}" for u in result.unfinished]
    lines += [""] if result.unfinished else []
    lines += _table("Regressions", result.regressions)
    lines += _table("Inconclusive" + (" (failing: --strict)" if result.strict else
                                      " (not failing; --strict fails them)"),
                    result.inconclusive)
    return "\n".join(lines).rstrip() + "\n"
