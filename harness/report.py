"""The run report: run_dir/report/report.md, report.html and PNG figures in report/figures/.

Sections: NFE errors (if any), run header, quality-matched speed-up, bound check, one section
per task (quality vs NFE, quality vs wall-clock, speed-up vs t0, samples) and a table of all
methods. Everything is computed from the run folder (harness.records), nothing is assumed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import markdown
import numpy as np
import pandas as pd

from harness import atomic, figures
from harness.records import (
    COLUMNS,
    load_reference,
    load_run,
    load_samples,
    read_cells,
    read_manifest,
)
from harness.stats import (
    ceil_speedup,
    coerce_numeric,
    flag,
    mean_ci,
    primary_metric,
    quality_matched_table,
    summarise,
)

WARM = ("ws-fm", "warm-start")
METHOD_ORDER = ["draft-only", "full-fm", "ws-fm", "warm-start", "ddpm", "ddim"]
CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f0f0f0}
tr:nth-child(even){background:#fafafa}img{max-width:100%}code{background:#f4f4f4}
h1,h2,h3{color:#123}"""


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float | np.floating) and math.isnan(v))


def _fmt(v: Any, digits: int = 4) -> str:
    if _missing(v):
        return "–"
    if isinstance(v, float | np.floating):
        return f"{v:.{digits}g}"
    return str(v)


def _int(v: Any) -> str:
    return "–" if _missing(v) else f"{float(v):g}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return (v if isinstance(v, str) else _fmt(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "task"


def _method_rank(method: Any) -> int:
    return METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)


def _cells(run_dir: Path) -> pd.DataFrame:
    """One row per finished cell (also those without metrics), numeric columns as floats."""
    keep = [c for c in COLUMNS if c not in ("metric", "value", "higher_is_better")]
    rows = [{k: r.get(k) for k in keep} for r in read_cells(run_dir)]
    return coerce_numeric(pd.DataFrame(rows, columns=keep))


def _errors(cells: pd.DataFrame) -> str:
    bad = cells[[flag(v) is False for v in cells["nfe_ok"]]]
    if bad.empty:
        return ""
    rows = [[r.task, r.method, r.variant, _int(r.seed), _int(r.n_steps), _int(r.nfe_expected),
             _int(r.nfe_measured), f"`{r.cell_id}`"] for r in bad.itertuples()]
    return ("## Errors: NFE mismatch\n\n"
            f"**{len(bad)} cell(s) executed a different number of network calls than their "
            "method declares (nfe_ok = False). Their NFE and speed-up figures are not "
            "trustworthy: this is a bug to fix before reading the rest of the report.**\n\n"
            + _table(["task", "method", "variant", "seed", "N", "NFE expected", "NFE measured",
                      "cell"], rows))


def _commit(info: Any) -> str:
    if not isinstance(info, Mapping):
        return "–" if _missing(info) else str(info)
    commit = info.get("commit") or "unknown (not a git checkout)"
    return f"{commit} (uncommitted changes)" if info.get("dirty") else commit


def _cell_counts(manifest: Mapping[str, Any], cells: pd.DataFrame) -> str:
    counts = manifest.get("cells")
    if not isinstance(counts, Mapping):
        return str(len(cells))
    return (f"{len(cells)} recorded of {counts.get('total')}; this invocation ran "
            f"{counts.get('run')} and reused {counts.get('reused')} finished by an earlier, "
            f"interrupted attempt ({len(manifest.get('resumed') or [])} resume(s))")


def _cache_counts(manifest: Mapping[str, Any]) -> str:
    cache = manifest.get("cache")
    if not isinstance(cache, Mapping):
        return "–"
    return (f"{cache.get('hits')} artefacts loaded, {cache.get('misses')} built, "
            f"{cache.get('discarded', 0)} corrupt entries discarded "
            f"({cache.get('root')})")


def _header(manifest: Mapping[str, Any], cells: pd.DataFrame) -> str:
    suite = manifest.get("suite")
    device = manifest.get("device")
    versions = manifest.get("versions") or {}
    rows = [
        ["run id", manifest.get("run_id")],
        ["suite", suite.get("name") if isinstance(suite, Mapping) else suite],
        ["commit", _commit(manifest.get("git_commit"))],
        ["device", device.get("description") if isinstance(device, Mapping) else device],
        ["started", manifest.get("started")], ["finished", manifest.get("finished")],
        ["cells", _cell_counts(manifest, cells)],
        ["cache", _cache_counts(manifest)],
        ["seeds", ", ".join(map(str, manifest.get("seeds") or []))],
        ["config hash", manifest.get("config_hash")],
        ["versions", ", ".join(f"{k} {v}" for k, v in versions.items())],
    ]
    return "## Run\n\n" + _table(["", ""], [[k, "–" if _missing(v) else str(v)] for k, v in rows])


def _qm_sentence(task: str, rows: pd.DataFrame) -> str:
    first = rows.iloc[0]
    hib = "higher" if first["higher_is_better"] else "lower"
    intro = f"**{task}** ({first['metric']}, {hib} is better"
    if math.isfinite(first["reference_nfe"]):
        intro += (f"; full FM's best mean {_fmt(first['full_best_mean'])} "
                  f"[{_fmt(first['full_best_ci_low'])}, {_fmt(first['full_best_ci_high'])}] at "
                  f"N={_int(first['full_best_n_steps'])}, cheapest budget within its interval "
                  f"N={_int(first['reference_n_steps'])}, NFE {_int(first['reference_nfe'])}")
    parts = []
    for r in rows.itertuples():
        if math.isfinite(r.speedup):
            parts.append(f"with the {r.draft} draft WS-FM matched it at {r.speedup:.3g}x fewer "
                         f"network calls ({r.best_variant}, K={_int(r.k_steps)})")
        else:
            parts.append(f"with the {r.draft} draft no speed-up was measured ({r.reason})")
    text = intro + "): " + "; ".join(parts) + "."
    by = {r.draft: r.speedup for r in rows.itertuples()}
    if "good" in by and "poor" in by:
        g, p = (0.0 if not math.isfinite(by[k]) else by[k] for k in ("good", "poor"))
        if g > p:
            text += " The good draft allowed the larger quality-matched speed-up, as expected."
        elif g < p:
            text += (" The poor draft allowed the LARGER quality-matched speed-up: the good draft "
                     "did not help here (the opposite of what the paper reports).")
        elif g == 0:
            text += " Neither draft reached the full model's best quality."
        else:
            text += " Both drafts allowed the same quality-matched speed-up."
    return text


def _quality_matched(df: pd.DataFrame, primary: Mapping[str, str]) -> str:
    head = ("## Quality-matched speed-up\n\nReference: full FM (Euler) at the cheapest budget "
            "whose mean lies within the 95% interval of its best mean over budgets (a larger, "
            "over-spent N would inflate the figure). A warm-start setting matches when its mean "
            "over seeds is not worse than that interval's bound; the speed-up is reference NFE / "
            "its measured NFE, the largest over matching settings.\n\n")
    table = quality_matched_table(df, primary) if not df.empty else pd.DataFrame()
    if table.empty:
        return head + "_No warm-start cells: nothing to compare._"
    rows = [[r.task, r.method, r.draft, r.metric,
             f"{_fmt(r.full_best_mean)} [{_fmt(r.full_best_ci_low)}, {_fmt(r.full_best_ci_high)}]",
             f"{_int(r.reference_nfe)} (N={_int(r.reference_n_steps)})",
             _fmt(r.best_variant), _int(r.k_steps),
             "–" if _missing(r.best_variant) else f"{_fmt(r.mean)} [{_fmt(r.ci_low)}, "
             f"{_fmt(r.ci_high)}]",
             _int(r.nfe_measured), f"{r.speedup:.3g}x" if math.isfinite(r.speedup) else "none",
             "" if _missing(r.reason) else r.reason] for r in table.itertuples()]
    out = head + _table(["task", "method", "draft", "metric", "full FM best [95% CI]",
                         "reference NFE", "matched setting", "K", "its quality [95% CI]", "NFE",
                         "speed-up", "note"], rows)
    ws = table[table["method"] == "ws-fm"]
    sentences = [_qm_sentence(t, g) for t, g in ws.groupby("task", sort=True)]
    return out + ("\n\n" + "\n\n".join(sentences) if sentences else "")


def _headline(df: pd.DataFrame, primary: Mapping[str, str]) -> str:
    """Per task: WS-FM (good draft, largest t0, draft start, from scratch) with K steps beside
    full FM (Euler) with N steps, on the primary metric, with intervals over seeds."""
    out = ["## Headline: WS-FM with K steps against full FM with N steps"]
    frame = coerce_numeric(df)
    for task in sorted(frame["task"].dropna().unique()):
        metric = primary_metric(frame, task, primary)
        sel = frame[(frame["task"] == task) & (frame["metric"] == metric)]
        full = sel[(sel["method"] == "full-fm") & (sel["solver"] == "euler")]
        ws = sel[(sel["method"] == "ws-fm") & (sel["draft"] == "good") & (sel["start"] == "draft")
                 & (sel["init"] == "scratch") & (sel["solver"] == "euler")]
        if full.empty or ws.empty:
            continue
        t0 = ws["t0"].max()
        ws = ws[ws["t0"] == t0]
        rows = []
        for n in sorted(set(full["n_steps"]) & set(ws["n_steps"])):
            f, w = full[full["n_steps"] == n], ws[ws["n_steps"] == n]
            fm, flo, fhi = mean_ci(f["value"])
            wm, wlo, whi = mean_ci(w["value"])
            rows.append([_int(n), f"{_fmt(fm)} [{_fmt(flo)}, {_fmt(fhi)}]",
                         _int(w["k_steps"].iloc[0]), f"{_fmt(wm)} [{_fmt(wlo)}, {_fmt(whi)}]",
                         str(w["seed"].nunique()),
                         _fmt(w["nfe_speedup"].median()), _fmt(w["wall_speedup"].median(), 3)])
        out.append(f"### {task}: {metric}, good draft, t0 = {_fmt(t0)}\n\n" + _table(
            ["N", "full FM, N steps [95% CI]", "K", "WS-FM, K steps [95% CI]", "seeds",
             "NFE speed-up", "wall-clock speed-up (median)"], rows))
    return "\n\n".join(out) if len(out) > 1 else ""


def _bound_check(cells: pd.DataFrame) -> str:
    warm = cells[cells["method"].isin(WARM)].sort_values(["task", "method", "variant",
                                                          "n_steps", "seed"])
    head = "## Bound check\n\n"
    if warm.empty:
        return head + "_No warm-start cells in this run._"
    rows, fails, nfe_exact, why = [], 0, 0, {"NFE": 0, "wall-clock": 0}
    for r in warm.itertuples():
        theory = ceil_speedup(r.t0, r.n_steps)
        measured = r.nfe_speedup
        if not math.isfinite(measured) and r.nfe_measured > 0:
            measured = r.ref_nfe / r.nfe_measured
        exact = math.isfinite(theory) and abs(measured - theory) <= 1e-9 * max(1.0, theory)
        nfe_exact += exact
        noise = r.timing_noise if math.isfinite(r.timing_noise) else 0.0
        wall_ok = r.wall_speedup >= r.wall_bound * (1 - noise)
        ok = flag(r.bound_ok)
        if ok is None and math.isfinite(r.wall_speedup) and math.isfinite(r.wall_bound):
            ok = exact and wall_ok
        verdict = "n/a" if ok is None else "OK" if ok else "FAIL"
        if ok is False:
            fails += 1
            reasons = [k for k, bad in (("NFE", not exact), ("wall-clock", not wall_ok)) if bad]
            for k in reasons:
                why[k] += 1
            verdict = f"**FAIL** ({', '.join(reasons)})" if reasons else "**FAIL**"
        rows.append([r.task, r.method, r.variant, _int(r.seed), _int(r.n_steps), _int(r.k_steps),
                     _fmt(r.t0), _int(r.nfe_measured), _fmt(measured), _fmt(theory),
                     _fmt(r.ideal_speedup), _fmt(r.wall_speedup), _fmt(r.wall_bound),
                     _fmt(r.timing_noise, 2), verdict])
    n = len(warm)
    summary = (f"**{fails} of {n} warm-start cells FAIL the bound check** "
               f"(NFE ratio inexact: {why['NFE']}; wall-clock short of S_wall by more than the "
               f"timing noise: {why['wall-clock']})." if fails else
               f"All {n} warm-start cells pass the bound check.")
    nfe_line = (f"NFE speed-up equals N/ceil((1-t0)N) in {nfe_exact} of {n} warm-start cells "
                "(recomputed here from N and t0 in exact decimal arithmetic).")
    return (head + summary + "\n\n" + nfe_line + "\n\n"
            + "Verdict: the harness's bound_ok (NFE ratio exact and measured wall-clock "
              "speed-up not short of S_wall = N s c / (T_d + K s c) by more than the run's "
              "timing noise).\n\n"
            + _table(["task", "method", "variant", "seed", "N", "K", "t0", "NFE",
                      "S_nfe measured", "N/ceil((1-t0)N)", "1/(1-t0)", "S_wall measured",
                      "S_wall bound", "noise", "verdict"], rows))


def _pick(cells: pd.DataFrame, **where: Any) -> pd.Series | None:
    """The cell matching ``where`` at the largest N, then largest t0, then smallest seed."""
    sel = cells
    for key, value in where.items():
        sel = sel[sel[key] == value]
    if sel.empty:
        return None
    sel = sel.assign(_n=sel["n_steps"].fillna(-1), _t=sel["t0"].fillna(-1))
    sel = sel.sort_values(["_n", "_t", "seed"], ascending=[False, False, True], kind="stable")
    return sel.iloc[0]


def _sample_panels(run_dir: Path, cells: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    seed0 = cells["seed"].min()
    first = cells[cells["seed"] == seed0] if math.isfinite(seed0) else cells
    picks = [
        ("draft-only good", [dict(method="draft-only", draft="good")]),
        ("draft-only poor", [dict(method="draft-only", draft="poor")]),
        ("full-fm euler", [dict(method="full-fm", solver="euler")]),
        ("ws-fm good draft", [dict(method="ws-fm", draft="good")]),
        ("warm-start (training-free)", [dict(method="warm-start", draft="good"),
                                        dict(method="warm-start")]),
        ("ddim", [dict(method="ddim")]),
        ("ar", [dict(method="ar")]),
    ]
    panels = []
    task = cells["task"].iloc[0] if len(cells) else None
    try:
        panels.append(("held-out data", load_reference(run_dir, task)))
    except (OSError, ValueError):
        pass
    for name, options in picks:
        cell = next((c for c in (_pick(first, **w) for w in options) if c is not None), None)
        if cell is None:
            continue
        try:
            samples = load_samples(run_dir, cell["cell_id"])
        except (OSError, ValueError):
            continue
        detail = [f"N={_int(cell['n_steps'])}" if cell["method"] != "draft-only" else ""]
        if cell["method"] in WARM:
            detail.append(f"t0={_fmt(cell['t0'])}")
        panels.append((f"{name} {' '.join(detail).strip()}\n(seed {_int(cell['seed'])})".strip(),
                       samples))
    return panels


def _image(path: Path | None, alt: str, out: Path) -> str:
    if path is None:
        return f"_No data for {alt.lower()}._"
    return f"![{alt}]({path.relative_to(out).as_posix()})"


def _task_section(run_dir: Path, task: str, df: pd.DataFrame, cells: pd.DataFrame,
                  primary: Mapping[str, str], out: Path) -> str:
    metric = primary_metric(df, task, primary)
    figs, slug = out / "figures", _slug(task)
    frame = coerce_numeric(df[(df["task"] == task) & (df["metric"] == metric)])
    tcells = cells[cells["task"] == task]
    parts = [f"## Task: {task}", f"Primary metric: **{metric}**. Bands: 95% CI over seeds; "
             "dashed horizontal lines: the draft alone."]
    if metric is not None and not frame.empty:
        parts.append("### Quality vs NFE\n\n" + _image(figures.quality_vs_cost(
            frame, "nfe_measured", figs / f"{slug}_quality_vs_nfe.png", f"{task}: {metric} vs NFE",
            "NFE measured (log)", metric), "Quality vs NFE", out))
        parts.append("### Quality vs wall-clock\n\n" + _image(figures.quality_vs_cost(
            frame, "time_s", figs / f"{slug}_quality_vs_time.png",
            f"{task}: {metric} vs wall-clock", "time per batch, s (log)", metric),
            "Quality vs wall-clock", out))
    else:
        parts.append("_No metric values for this task._")
    warm = tcells[tcells["method"].isin(WARM)]
    parts.append("### Speed-up vs t0\n\n" + _image(
        figures.speedup_vs_t0(warm, figs / f"{slug}_speedup_vs_t0.png", task) if len(warm)
        else None, "Speed-up vs t0", out))
    panels = _sample_panels(run_dir, tcells)
    images = bool(panels) and np.asarray(panels[0][1]).ndim == 4
    draw = figures.sample_grid if images else figures.sample_scatter
    parts.append("### Samples\n\n" + _image(
        draw(panels, figs / f"{slug}_samples.png", f"{task}: samples") if panels else None,
        "Samples", out))
    if images:
        parts.append(_grids(run_dir, task, tcells, out))
    return "\n\n".join(parts)


def _grids(run_dir: Path, task: str, cells: pd.DataFrame, out: Path) -> str:
    """Image tasks: one sample grid per method variant and budget (smallest seed)."""
    first = cells[cells["seed"] == cells["seed"].min()]
    clamped = {r["cell_id"]: (r.get("finalize") or {}).get("clamped_fraction")
               for r in read_cells(run_dir)}
    rows = []
    for cell in first.sort_values(["method", "variant", "n_steps"]).itertuples():
        try:
            samples = load_samples(run_dir, cell.cell_id)
        except (OSError, ValueError):
            continue
        name = f"{cell.method} {'' if _missing(cell.variant) else cell.variant}".strip()
        path = figures.sample_grid(
            [(f"{name}, N={_int(cell.n_steps)}", samples)],
            out / "figures" / "grids" / f"{_slug(task)}_{_slug(name)}_N{_int(cell.n_steps)}.png",
            task)
        if path is not None:
            share = clamped.get(cell.cell_id)
            rows.append([cell.method, _fmt(cell.variant), _int(cell.n_steps),
                         "–" if share is None else f"{100 * share:.1f}%",
                         _image(path, "grid", out)])
    return ("### Sample grids per method and budget\n\nSeed "
            f"{_int(first['seed'].min())}. Clamped: the share of sample values outside [-1, 1] "
            "that were clamped before quantising to uint8 for the metrics (counted, never "
            "silent).\n\n" + _table(["method", "variant", "N", "clamped", "grid"], rows))


def _all_methods(df: pd.DataFrame, primary: Mapping[str, str]) -> str:
    head = ("## All methods\n\nMean ± 95% Student-t half-width over seeds (n = seeds); "
            "↓ lower is better, ↑ higher is better. Time: median wall-clock per batch.\n\n")
    summ = summarise(df)
    if summ.empty:
        return head + "_No finished cells._"
    out = [head.rstrip()]
    for task, g in summ.groupby("task", sort=True):
        metrics = sorted(g["metric"].dropna().unique())
        pm = primary_metric(df, task, primary)
        metrics = [pm] + [m for m in metrics if m != pm] if pm in metrics else metrics
        arrows = {m: "↑" if (g.loc[g["metric"] == m, "higher_is_better"] >= 0.5).any() else "↓"
                  for m in metrics}
        rows = []
        groups = sorted(g.groupby(["method", "variant", "n_steps"], dropna=False, sort=False),
                        key=lambda kv: (_method_rank(kv[0][0]), str(kv[0][0]), str(kv[0][1]),
                                        kv[1]["n_steps"].fillna(-1).iloc[0]))
        for (method, variant, n_steps), sel in groups:
            by_metric = {r.metric: r for r in sel.itertuples()}
            vals = []
            for m in metrics:
                s = by_metric.get(m)
                if s is None or _missing(s.mean):
                    vals.append("–")
                elif s.n_seeds < 2:
                    vals.append(f"{_fmt(s.mean)} (n={s.n_seeds})")
                else:
                    vals.append(f"{_fmt(s.mean)} ± {_fmt((s.ci_high - s.ci_low) / 2, 2)}")
            r = sel.iloc[0]
            rows.append([method, "–" if _missing(variant) else variant, _int(n_steps),
                         _int(r["k_steps"]), *vals, str(sel["n_seeds"].max()),
                         _int(r["nfe_measured"]), _fmt(r["time_s"] * 1000, 3)])
        headers = ["method", "variant", "N", "K", *[f"{m} {arrows[m]}" for m in metrics],
                   "seeds", "NFE", "time/batch (ms)"]
        out.append(f"### {task}\n\n" + _table(headers, rows))
    return "\n\n".join(out)


def _html(md: str, title: str) -> str:
    body = markdown.markdown(md, extensions=["tables"])
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_report(run_dir: str | Path) -> Path:
    """Write run_dir/report/report.md, report.html and figures/*.png; return report.md's path."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    df, cells = load_run(run_dir), _cells(run_dir)
    out = run_dir / "report"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for stale in (out / "figures").rglob("*.png"):
        stale.unlink()
    primary = manifest.get("primary_metrics") or {}
    title = f"WS-FM benchmark report: {manifest.get('run_id', run_dir.name)}"
    parts = [f"# {title}", _errors(cells), _header(manifest, cells)]
    if cells.empty:
        parts.append("_No finished cells in this run yet._")
    else:
        parts += [_headline(df, primary), _quality_matched(df, primary), _bound_check(cells)]
        parts += [_task_section(run_dir, t, df, cells, primary, out)
                  for t in sorted(cells["task"].dropna().unique())]
        parts.append(_all_methods(df, primary))
    md = "\n\n".join(p for p in parts if p) + "\n"
    path = atomic.write_text(out / "report.md", md)
    atomic.write_text(out / "report.html", _html(md, title))
    return path
