"""Suites: what to run, from a TOML file or the command line, expanded into cells.

    name = "my-suite"
    seeds = [0, 1, 2]             # evaluation seeds: the headline is measured on these
    selection_seeds = [100, 101]  # settings (reference config, t0, N, ...) are chosen on these
    budgets = [10, 20, 50]        # N: steps of the full grid (step size 1/N)
    device = "cpu"
    n_samples = 2000              # samples generated, timed and judged per cell (at most
                                  # 1000000 unless $WSFM_BENCH_MAX_SAMPLES says otherwise)
    n_eval = 2000                 # held-out reference points for the metrics
    [training]                    # optional overrides of the tasks' training settings
    steps = 1500                  # (harness.nn.config.TrainConfig; pairs_batch_size and
                                  # pairs_max_steps: a warm start's own model's, if not these)

    [[tasks]]
    name = "two-moons"            # other keys are the task's options, except these
    n_samples = 1000              # per-task overrides: n_samples, n_eval, repeats, budgets,
    seeds = [0, 1, 2, 3, 4]       # training, seeds, selection_seeds, time_budgets, time_batch,
    reference = "train"           # metrics, metric_options, primary_metric, reference (the
                                  # split metrics compare with: "test" (default) or "train")

    [[methods]]
    name = 'ws-fm'
    t0 = [0.5, 0.9]               # a list expands: one variant per value (cartesian product;
                                  # each value once, and never an empty list)
    draft = ["good", "poor"]
    tasks = ["two-moons"]         # optional: only on these tasks
    budgets = [10, 100]           # optional: instead of the suite's budgets
    time_budgets = [0.05]         # optional: instead of the suite's (or task's) time budgets
    training = { pairs_max_steps = 300 }  # optional: this method's own overrides of the
                                  # task's training (a fine-tune's full FM trains as keyed by
                                  # the merged settings, so override only pairs_* to share it)

``exclusive_timing = true`` (top level): with parallel executors (``--workers``, Ray), cells
are timed alone, one at a time, after the shared training has run side by side.

``compile = [false, true]`` (top level) runs each cell also with its network wrapped in
torch.compile (true: the "inductor" backend; a backend name picks another): a separate
variant, labelled " compiled", whose first-call compile time is recorded apart.

Wall-clock budgets (harness.run.budgets): ``time_budgets = [0.02, 0.05, 0.2]`` gives seconds per
batch of ``time_batch`` samples (default: the cell's n_samples). Each becomes a TimeCell per
method and seed, beside the NFE-budget cells: its N is chosen at run time, the largest whose
predicted time fits. Both keys can be set suite-wide and per task; ``time_budgets`` also per
method (``time_budgets = []`` there: none for that method).

Evidence (harness.analysis.evidence): the headline judges each warm start by a paired
non-inferiority test against full FM's cheapest non-inferior configuration, with a margin per
metric (stated before the data, with a reason: harness.analysis.margins) and a level alpha;
settings are chosen on ``selection_seeds``, disjoint from the evaluation ``seeds``. Both are
recorded in the manifest::

    [evidence]
    alpha = 0.05
    margin = { rel = 0.05 }            # every metric: 5% of the reference's best mean
    margins = { fid = { abs = 1.0, reason = "what a reader calls the same" } }  # per metric
    max_seeds = 20                     # --until-decided adds evaluation seeds to undecided
    seed_batch = 5                     # rows, this many at a time, up to max_seeds per task

A task's own margins go in its entry: ``margins = { swd = { abs = 0.004, reason = "..." } }``
(or ``{ retain = 0.8 }``: keep 80% of full FM's improvement over the draft alone).

Everything is validated (plugin names, options, t0, budgets, device) before any work
starts; errors name the bad key and what is allowed.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.analysis.noninferiority import Rules
from harness.checks import (
    distinct_values,
    plain_name,
    positive_int,
    positive_int_list,
    seed_list,
    time_budget_list,
)
from harness.errors import ConfigError
from harness.hashing import stable_hash
from harness.run.expand import expand_cells
from harness.run.timing import check_backend
from harness.run.validate import check_cells, validate

SUITES_DIR = Path(__file__).resolve().parents[1] / "suites"  # harness/suites
DEFAULT_SUITE = SUITES_DIR / "default.toml"


@dataclass
class MethodSpec:
    name: str
    options: dict[str, Any]
    tasks: list[str] | None = None
    budgets: list[int] | None = None
    time_budgets: list[float] | None = None  # seconds per batch; None: the task's or suite's
    # This method's own overrides of the task's training (a control that learns less, say);
    # None: the task's.
    training: dict[str, Any] | None = None


@dataclass
class Suite:
    name: str
    tasks: list[tuple[str, dict[str, Any]]]
    methods: list[MethodSpec]
    budgets: list[int]
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    selection_seeds: list[int] = field(default_factory=list)
    device: str = "cpu"
    n_samples: int = 2000
    n_eval: int = 2000
    repeats: int = 5  # timed repeats per cell: the robust (MAD) timing noise needs >= 5
    warmup: int = 1
    threads: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    # Per-task overrides of n_samples, n_eval, budgets and training (a costly task, say).
    task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Wall-clock budgets (harness.run.budgets): seconds per batch of time_batch samples.
    time_budgets: list[float] = field(default_factory=list)
    time_batch: int | None = None
    # torch.compile variants: False (eager) and/or backend names (harness.run.timing).
    compile: list[str | bool] = field(default_factory=lambda: [False])
    # How the headline judges claims (harness.analysis.evidence.Rules.from_dict).
    evidence: dict[str, Any] = field(default_factory=dict)
    # Parallel executors: cells run one at a time after the shared training (where wall-clock
    # claims matter; harness.run.executors).
    exclusive_timing: bool = False

    def metrics_for(self, name: str, task: Any) -> list[str]:
        """The metrics a task is judged by: the suite's ``metrics`` for it, else its own."""
        return list(self.task_settings.get(name, {}).get("metrics") or task.metrics)

    def primary_metric_for(self, name: str, task: Any) -> str:
        """The suite's ``primary_metric`` for the task, else the task's own if the task is still
        judged by it, else the first of its metrics."""
        chosen = self.task_settings.get(name, {}).get("primary_metric")
        names = self.metrics_for(name, task)
        if chosen:
            return chosen
        return task.primary_metric if task.primary_metric in names else names[0]

    def rules(self) -> Rules:
        """How the headline judges this suite's claims: [evidence] and the tasks' margins."""
        margins = {name: s["margins"] for name, s in self.task_settings.items()
                   if s.get("margins")}
        return Rules.from_dict({**self.evidence, **({"task_margins": margins} if margins
                                                    else {})})

    def seeds_for(self, task: str) -> tuple[list[int], list[int]]:
        """(selection seeds, evaluation seeds) of a task: its own settings, else the suite's."""
        settings = self.task_settings.get(task, {})
        return (settings.get("selection_seeds", self.selection_seeds),
                settings.get("seeds", self.seeds))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # Unused wall-clock keys are left out, so a suite without them keeps the config hash
        # (and run folder) it had before they existed.
        if not data["time_budgets"]:
            del data["time_budgets"]
        if data["time_batch"] is None:
            del data["time_batch"]
        if data["compile"] == [False]:  # the default, left out for the same reason
            del data["compile"]
        for key in ("selection_seeds", "evidence", "exclusive_timing"):
            if not data[key]:
                del data[key]
        for spec in data["methods"]:
            for key in ("time_budgets", "training"):
                if spec.get(key) is None:
                    spec.pop(key, None)
        return data

    @property
    def config_hash(self) -> str:
        return stable_hash(self.as_dict())


_TOP_KEYS = {f.name for f in fields(Suite)} - {"task_settings"}
TASK_SETTINGS = ("n_samples", "n_eval", "repeats", "budgets", "training", "time_budgets",
                 "time_batch", "seeds", "selection_seeds", "metrics", "metric_options",
                 "primary_metric", "reference", "margins")


def _compile_list(value: Any, what: str) -> list[str | bool]:
    """compile = false | true | "backend" | [...]: each False or a torch.compile backend."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{what} must not be empty; use compile = false")
    out = [check_backend(v, what) for v in items]
    if len(set(out)) != len(out):
        raise ConfigError(f"{what} has duplicates: {value!r} (true means 'inductor')")
    return out


def _expand(options: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """One dict per combination of the options' values (a list gives several). An empty list
    would drop the method silently, a repeated value run the same cells twice: both refused."""
    for key, value in options.items():
        if isinstance(value, list):
            distinct_values(value, f"{where}: {key}")
    keys = list(options)
    values = [v if isinstance(v, list) else [v] for v in options.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def parse_suite(data: dict[str, Any], source: str = "suite") -> Suite:
    """Build and validate a Suite from a TOML-shaped dict."""
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    for key in ("tasks", "methods"):
        if not data.get(key):
            raise ConfigError(f"{source}: needs at least one [[{key}]] entry")
    if "budgets" not in data:
        raise ConfigError(f"{source}: needs budgets = [N, ...] (steps of the full grid)")
    task_list, task_settings = _parse_tasks(data["tasks"], source)
    name = data.get("name", Path(source).stem)
    suite = Suite(
        name=plain_name(str(name), f"{source}: the suite's name", why=" (runs are stored in "
                        "a folder named after it)"),
        tasks=task_list,
        methods=_parse_methods(data["methods"], source),
        budgets=positive_int_list(data["budgets"], f"{source}: budgets"),
        seeds=seed_list(data.get("seeds", [0, 1, 2]), f"{source}: seeds"),
        selection_seeds=seed_list(data.get("selection_seeds", []), f"{source}: selection_seeds",
                                  empty=True),
        device=str(data.get("device", "cpu")),
        n_samples=positive_int(data.get("n_samples", 2000), f"{source}: n_samples"),
        n_eval=positive_int(data.get("n_eval", 2000), f"{source}: n_eval"),
        repeats=positive_int(data.get("repeats", 5), f"{source}: repeats"),
        warmup=positive_int(data.get("warmup", 1), f"{source}: warmup"),
        threads=(None if data.get("threads") is None else
                 positive_int(data["threads"], f"{source}: threads")),
        training=_table(data.get("training", {})),  # validate() says what it must hold
        task_settings=task_settings,
        time_budgets=time_budget_list(data.get("time_budgets", []), f"{source}: time_budgets"),
        compile=_compile_list(data.get("compile", False), f"{source}: compile"),
        time_batch=(None if data.get("time_batch") is None else
                    positive_int(data["time_batch"], f"{source}: time_batch")),
        evidence=Rules.from_dict(data.get("evidence"), f"{source}: [evidence]").to_dict()
        if data.get("evidence") else {},
        exclusive_timing=_flag(data.get("exclusive_timing", False),
                               f"{source}: exclusive_timing"),
    )
    suite.rules()  # the tasks' margins, checked with [evidence]
    validate(suite, source)
    check_cells(expand_cells(suite), source)
    return suite


def _entry_name(entry: Any, kind: str, source: str) -> tuple[str, dict[str, Any]]:
    """(name, the rest) of a [[tasks]] or [[methods]] entry (a bare name is one too)."""
    entry = {"name": entry} if isinstance(entry, str) else dict(entry)
    if "name" not in entry:
        raise ConfigError(f"{source}: a [[{kind}]] entry has no name")
    return entry.pop("name"), entry


def _parse_tasks(entries: list[Any], source: str) -> tuple[list[tuple[str, dict[str, Any]]],
                                                          dict[str, dict[str, Any]]]:
    """The [[tasks]]: (name, task options) in order, and each task's own settings
    (TASK_SETTINGS), checked."""
    task_list, task_settings = [], {}
    for entry in entries:
        name, options = _entry_name(entry, "tasks", source)
        settings = {k: options.pop(k) for k in TASK_SETTINGS if k in options}
        where = f"{source}: task {name!r}"
        for key in ("n_samples", "n_eval", "repeats", "time_batch"):
            if key in settings:
                positive_int(settings[key], f"{where}: {key}")
        for key, check in (("budgets", positive_int_list), ("time_budgets", time_budget_list),
                           ("seeds", seed_list)):
            if key in settings:
                settings[key] = check(settings[key], f"{where}: {key}")
        if "selection_seeds" in settings:
            settings["selection_seeds"] = seed_list(settings["selection_seeds"],
                                                    f"{where}: selection_seeds", empty=True)
        if settings:
            task_settings[name] = settings
        task_list.append((name, options))
    return task_list, task_settings


def _parse_methods(entries: list[Any], source: str) -> list[MethodSpec]:
    """The [[methods]], each list of options expanded into one MethodSpec per combination."""
    method_list = []
    for entry in entries:
        name, options = _entry_name(entry, "methods", source)
        only = options.pop("tasks", None)
        if only is not None:
            only = only if isinstance(only, list) else [only]
            distinct_values(only, f"{source}: method {name!r}: tasks")
        budgets = options.pop("budgets", None)
        if budgets is not None:
            budgets = positive_int_list(budgets, f"{source}: budgets of method {name!r}")
        time_budgets = options.pop("time_budgets", None)
        if time_budgets is not None:
            time_budgets = time_budget_list(time_budgets,
                                            f"{source}: time_budgets of method {name!r}")
        training = options.pop("training", None)  # validate() says what it must hold
        method_list += [MethodSpec(name, combo, only, budgets, time_budgets, training)
                        for combo in _expand(options, f"{source}: method {name!r}")]
    return method_list


def _table(value: Any) -> Any:
    """A copy of a TOML table; anything else as it is, for validation to refuse."""
    return dict(value) if isinstance(value, dict) else value


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what} = {value!r} must be true or false")
    return value


def read_suite_file(path: str | Path) -> dict[str, Any]:
    """The TOML table of a suite file (name defaults to the file's stem); not yet validated."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.toml"))
        raise ConfigError(f"suite {path} is a folder; a suite is a TOML file"
                          + (f" (that folder holds {', '.join(found[:5])}"
                             f"{', ...' if len(found) > 5 else ''})" if found else
                             ", e.g. harness/suites/smoke.toml"))
    if not path.is_file():
        raise ConfigError(f"suite file {path} does not exist; give a TOML file (see README)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"suite file {path} is not valid TOML: {exc}") from exc
    data.setdefault("name", path.stem)
    return data


def load_suite(path: str | Path) -> Suite:
    return parse_suite(read_suite_file(path), str(path))
