"""The headline, first thing in the report and `wsfm-bench summary RUN_DIR [--json]`: per task,
warm-start method and draft, the verdict of harness.analysis.evidence and, where the claim is
backed (non-inferior), the NFE and wall-clock speed-ups against full FM's reference; per task,
one figure of quality against wall-clock time with full FM's frontier, the drafts alone and
every warm-start setting. From stored results only (no torch)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.evidence import control_misreads, headline
from harness.analysis.noninferiority import Rules
from harness.analysis.stats import coerce_numeric
from harness.report import figures
from harness.report.format import fmt, md_table, slug
from harness.report.loading import load_for_report
from harness.roles import Role

# The fields of `wsfm-bench summary --json`, in order (docs/test: each row has at least these).
JSON_FIELDS = ("task", "draft", "method", "title", "control", "variant", "t0", "n_budget",
               "reference", "metric", "margin", "margin_rule", "floor", "target_quality",
               "draft_position", "speedup_nfe", "speedup_wall", "interval", "verdict",
               "detectable_margin", "seeds_needed")
LEGEND = ("Verdicts: **non-inferior**: as good as full FM's reference within the margin, and "
          "credited to the warm start (its draft alone is shown worse); **inferior**: shown "
          "worse than the reference by more than the margin; **draft-alone-suffices**: the "
          "draft alone is already non-inferior, so the task does not test the warm start; "
          "**inconclusive**: not decided, with the seeds that would decide it.")


def _x(v: Any) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.3g}x"


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as `summary --json` gives them: a claim's speed-ups only where it is backed
    (non-inferior, every chosen cell passing the bound and NFE checks); the measured ratios
    of the others under ``measured_*``."""
    out = []
    for r in rows:
        backed = r["speedup_backed"]
        row = {k: r[k] for k in JSON_FIELDS}
        row.update(speedup_nfe=r["speedup_nfe"] if backed else None,
                   speedup_wall=r["speedup_wall"] if backed else None,
                   interval=r["interval"] if backed else [None, None])
        row.update({k: v for k, v in r.items() if k not in row})
        row["measured_speedup_nfe"], row["measured_speedup_wall"] = (r["speedup_nfe"],
                                                                     r["speedup_wall"])
        out.append(row)
    return out


def trust_banner(rows: list[dict[str, Any]]) -> str:
    """A loud first line when a control misreads: the run's verdicts cannot be trusted."""
    misreads = control_misreads(rows)
    if not misreads:
        return ""
    return ("**This run cannot be trusted: " + "; ".join(misreads) + ".** A control's verdict "
            "is known beforehand; when the harness misreads one, it may misread the others.")


# The paper's figures (docs/paper.md, a secondary source) by (task, draft), for the
# comparison printed beside the measured ones; a task of another name has none.
PAPER = {
    ("two-moons", "good"): "about 10x",
    ("two-moons", "poor"): "about 1.5x",
    ("text", "good"): "4.8x in time per sample (Text-8, t0 = 0.8: 6.56 s -> 1.36 s, GPT-J-6B "
                      "NLL 6.58 -> 6.54)",
}


def paper_table(rows: list[dict[str, Any]]) -> str:
    """Each warm-start row with a figure in the paper: what this run backs, beside it."""
    body = []
    for r in rows:
        paper = PAPER.get((r["task"], r["draft"]))
        if paper is None:
            continue
        if r.get("speedup_backed"):
            measured = f"{_x(r['speedup_nfe'])} NFE, {_x(r['speedup_wall'])} wall-clock"
        elif r["verdict"] == "non-inferior":  # its cells failed the bound or NFE check
            measured = "none backed (non-inferior, but its speed-up is not claimed)"
        else:
            measured = f"none backed ({r['verdict']})"
        body.append([r["task"], r["draft"], r["title"],
                     "–" if r["t0"] is None else f"{r['t0']:g}", measured, paper])
    if not body:
        return ""
    return ("### Beside the paper\n\nThe paper's speed-ups (docs/paper.md, a secondary "
            "source) beside what this run backs; its poor-draft case is the about-1.5x one.\n\n"
            + md_table(["task", "draft", "method", "chosen t0", "this run", "the paper"], body))


def _versus(v: dict[str, Any] | None) -> str:
    if not v or v["worse"] is None:
        return "–"
    low, high = v["interval"]
    span = "" if low is None else f" [{v['level']:.0%}: {fmt(low, 3)}, {fmt(high, 3)}]"
    return f"{fmt(v['worse'], 3)}{span}: {v['state']}"


def headline_table(rows: list[dict[str, Any]]) -> str:
    """The headline rows as one Markdown table."""
    body = []
    for r in rows:
        backed = r["speedup_backed"]
        bound = "≤" if backed and r["reference_censored"] else ""
        ref = r["reference"] or {}
        wall = (f"{bound}{_x(r['speedup_wall'])} [{_x(r['interval'][0])}, "
                f"{_x(r['interval'][1])}]" if backed else "–")
        setting = "–" if r["variant"] is None else (
            f"{r['variant']}, N={r['n_budget']}, K={r['k_steps']}")
        draft = r["draft"] + (f" ({r['control']} control)" if r["control"] else "")
        alone = fmt(r["draft_mean"]) + (f" ({r['draft_position']})" if r["draft_position"]
                                        else "")
        body.append([r["task"], draft, r["title"], setting,
                     f"{ref.get('title', '–')} {ref.get('variant', '–')}, "
                     f"N={ref.get('n_budget', '–')}",
                     f"{r['metric']} ±{fmt(r['margin'], 3)}", fmt(r["mean"]),
                     fmt(r["reference_mean"]), alone, fmt(r["floor"]),
                     fmt(r["target_quality"]), _versus(r["versus_draft"]),
                     f"{bound}{_x(r['speedup_nfe'])}" if backed else "–", wall,
                     f"**{r['verdict']}**", fmt(r["detectable_margin"], 3), r["reason"]])
    return md_table(["task", "draft", "method", "chosen setting", "reference (full FM)",
                     "metric ± margin", "quality", "reference", "draft alone",
                     "data floor", "its targets", "worse than its draft by", "NFE speed-up",
                     "wall-clock speed-up [95%]", "verdict", "smallest margin shown", "why"],
                    body)


def margins_table(rows: list[dict[str, Any]]) -> str:
    """Each task and metric's margin: its rule, its value and why (stated before the data)."""
    seen = {}
    for r in rows:
        key = (r["task"], r["metric"], r["margin_rule"])
        if r["margin_rule"] and key not in seen:
            seen[key] = [r["task"], r["metric"], r["margin_rule"], fmt(r["margin"], 3),
                         r["margin_reason"] or "–"]
    if not seen:
        return ""
    return "Margins, stated before the data:\n\n" + md_table(
        ["task", "metric", "rule", "value", "why"], list(seen.values()))


def _intro(manifest: Mapping[str, Any]) -> str:
    rules = Rules.from_dict((manifest.get("evidence") or {}).get("rules"))
    seeds = (manifest.get("evidence") or {}).get("seeds") or {}
    counts = "; ".join(f"{t}: {len(s.get('selection', []))} selection, "
                       f"{len(s.get('evaluation', []))} evaluation seeds"
                       for t, s in sorted(seeds.items())) or (
        f"evaluation seeds {manifest.get('seeds')}, no selection seeds (a run written before "
        "they existed)")
    return (
        "Is WS-FM as good as full flow matching, and how much faster? Per task (primary "
        "metric), warm-start method and draft: the reference is full FM's cheapest "
        "configuration (every solver and budget run) non-inferior to its best, the setting "
        "(t0, start, init, solver, N) is the cheapest non-inferior to the reference, both "
        "chosen on the selection seeds; the verdict is a paired one-sided non-inferiority test "
        f"on the evaluation seeds (alpha {rules.alpha:g}, Holm over every test of the "
        "headline, margins stated per task and metric below), with the draft alone as the "
        "floor: a non-inferior warm start is credited only when its draft alone is shown "
        "worse, and draft-alone-suffices needs the draft alone shown non-inferior. The chosen "
        "setting is also compared with its own draft alone (paired by seed, same margin, not "
        "Holm-adjusted: does the warm start degrade what it starts from?). Data floor: real "
        "data's own score against the evaluation set, the best any method can score; its "
        "targets: the warm start's training targets' own score, the best training on them "
        "can reach; smallest margin shown: the margin the evidence could have shown "
        "non-inferiority with. Speed-ups are stated only for non-inferior rows whose cells "
        "all passed the bound check: NFE, and wall-clock per batch with the draft's time "
        "included, both sides measured in this run, with a paired bootstrap 95% interval over "
        f"the evaluation seeds (≤: an upper bound, the reference is censored). Seeds: "
        f"{counts}.")


def headline_section(run_dir: str | Path, df: pd.DataFrame, manifest: Mapping[str, Any],
                     out: str | Path) -> tuple[str, list[dict[str, Any]]]:
    """The report's opening section (figures under out/figures) and the headline rows."""
    rows, notes = headline(df, manifest) if not df.empty else ([], {})
    parts = ["## Headline", trust_banner(rows)]
    if not rows:
        parts.append("_No warm-start rows: nothing to judge._")
    else:
        parts += [LEGEND, headline_table(rows)]
    parts += [_intro(manifest), margins_table(rows), paper_table(rows)]
    frame = coerce_numeric(df)
    for task in sorted({r["task"] for r in rows}):
        if notes.get(task):
            parts.append("\n".join(f"- {n}" for n in notes[task]))
        task_rows = [r for r in rows if r["task"] == task]
        metric = task_rows[0]["metric"]
        path = figures.frontier(frame[(frame["task"] == task) & (frame["metric"] == metric)],
                                task_rows, Path(out) / "figures" / f"{slug(task)}_headline.png",
                                f"{task}: {metric} vs wall-clock")
        if path is not None:
            parts.append(f"![{task} headline]({path.relative_to(out).as_posix()})")
    return "\n\n".join(p for p in parts if p), rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `summary` subcommand's arguments."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")
    parser.add_argument("--json", action="store_true",
                        help="a JSON list of rows (task, draft, method, variant, t0, n_budget, "
                             "reference, metric, margin, speedup_nfe, speedup_wall, interval, "
                             "verdict, ...)")


def run(args: argparse.Namespace) -> int:
    """Print the headline of a run (Markdown, or JSON with --json). An unfinished run says so:
    first (and on stderr), and in each JSON row's ``run``."""
    run = load_for_report(args.run_dir, "summarise")
    manifest, df, status = run.manifest, run.df, run.status
    if status.line():
        print(f"wsfm-bench: warning: {status.line()}", file=sys.stderr)
    rows, notes = headline(df, manifest)
    warm = bool((df["role"] == Role.WARM_START).any())
    if not warm:  # on stderr: --json stays a JSON list
        print(f"{args.run_dir}: no warm-start cells: nothing to judge (the headline judges "
              "warm starts against full FM)", file=sys.stderr)
    if args.json:
        print(json.dumps([{**row, "run": status.to_json()} for row in summary_rows(rows)],
                         indent=2))
        return 0
    if not warm:
        return 0
    parts = [f"**{status.line()}**" if status.line() else "", trust_banner(rows), LEGEND,
             headline_table(rows), _intro(manifest), margins_table(rows), paper_table(rows),
             "\n".join(f"- {note}" for task in sorted(notes) for note in notes[task])]
    print("\n\n".join(p for p in parts if p))
    return 0
