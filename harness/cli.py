"""The `wsfm-bench` command: list plugins, run a suite, write a report."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib
import os
import signal
import sys
import tomllib
from typing import Any

from harness.errors import ConfigError, Interrupted, WsfmBenchError
from harness.registry import DISTRIBUTION, REGISTRIES


def _value(text: str) -> Any:
    """A TOML scalar ('0.9', 'true', '"x"'), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_method(text: str) -> dict[str, Any]:
    """'ws-fm:t0=0.5|0.9,draft=good' -> {'name': 'ws-fm', 't0': [0.5, 0.9], 'draft': 'good'}."""
    name, _, rest = text.partition(":")
    entry: dict[str, Any] = {"name": name.strip()}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        if not eq:
            raise ConfigError(f"--method {text!r}: option {item!r} is not key=value")
        values = [_value(v.strip()) for v in raw.split("|")]
        entry[key.strip()] = values if len(values) > 1 else values[0]
    return entry


def build_suite(args: argparse.Namespace):
    """The suite to run: the suite file (or the default suite), of which --task and --method
    pick entries, keeping their settings; or, with no suite file and both --task and
    --method, a suite from the command line. Other flags override the suite's keys."""
    from harness.run.suite import DEFAULT_SUITE, parse_suite, read_suite_file

    source = str(args.suite or DEFAULT_SUITE)
    if args.suite is None and args.task and args.method:
        source = "command line"
        data: dict[str, Any] = {"name": "cli", "budgets": args.budgets or [10, 20, 50],
                                "tasks": [{"name": t} for t in args.task],
                                "methods": [parse_method(m) for m in args.method]}
    else:
        data = read_suite_file(args.suite or DEFAULT_SUITE)
        pick_entries(data, args.task, args.method, args.suite or "the default suite")
    for key in ("budgets", "seeds", "selection_seeds", "device", "n_samples", "threads"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.train_steps is not None:
        training = data.setdefault("training", {})
        if isinstance(training, dict):  # else parse_suite says what [training] must be
            training["steps"] = args.train_steps
    return parse_suite(data, source)


def _name_of(entry: Any) -> Any:
    return entry.get("name") if isinstance(entry, dict) else entry


def _pick(entries: Any, names: list[str], flag: str, kind: str, where: str) -> list[Any]:
    """The ``entries`` (a suite's [[tasks]] or [[methods]]) named in ``names``, in the suite's
    order; an unknown name is refused with the names there are."""
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: {kind}s must be a list of [[{kind}s]] entries")
    have = [_name_of(e) for e in entries]
    for name in names:
        if name not in have:
            raise ConfigError(f"{flag} {name!r}: {where} has no {kind} of that name; its "
                              f"{kind}s: {', '.join(map(str, dict.fromkeys(have))) or 'none'}")
    return [e for e, name in zip(entries, have, strict=True) if name in names]


def pick_entries(data: dict[str, Any], tasks: list[str] | None, methods: list[str] | None,
                 where: str) -> None:
    """With a suite, --task and --method keep the suite's entries of those names, with every
    setting they have (seeds, training, options); a method entry limited to other tasks goes."""
    if tasks:
        data["tasks"] = _pick(data.get("tasks"), tasks, "--task", "task", where)
        kept = []
        for entry in data.get("methods") or []:
            only = entry.get("tasks") if isinstance(entry, dict) else None
            if isinstance(only, list):
                if not set(only) & set(tasks):
                    continue
                entry = {**entry, "tasks": [t for t in only if t in tasks]}
            kept.append(entry)
        where += f" on task(s) {', '.join(tasks)}"
        if not kept:
            raise ConfigError(f"--task: no [[methods]] entry of {where} runs (each names "
                              "other tasks in its tasks = [...])")
        data["methods"] = kept
    if methods:
        for text in methods:
            if ":" in text:
                raise ConfigError(
                    f"--method {text!r}: with a suite, --method picks the suite's [[methods]] "
                    "entries by name, with the options the suite gives them; give the name "
                    "alone, or edit the suite (both --task and --method without a suite file "
                    "make a suite from the command line)")
        data["methods"] = _pick(data.get("methods"), methods, "--method", "method", where)


def _origin(package: str | None, version: str | None) -> str:
    """'' for wsfm-bench's own plugins, else where the plugin comes from."""
    if package == DISTRIBUTION:
        return ""
    return f" [third-party: {package} {version}]" if package else " [registered in-process]"


def _options(obj: Any) -> list[str]:
    """A plugin's options (its dataclass fields) as 'name: type = default'."""
    if not dataclasses.is_dataclass(obj):
        return []
    out = []
    for f in dataclasses.fields(obj):
        if not f.init:
            continue
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        out.append(f"{f.name}: {kind} = {default}")
    return out


def cmd_list(args: argparse.Namespace) -> int:
    broken = 0
    for kind, registry in REGISTRIES.items():
        if args.kind and kind != args.kind:
            continue
        print(f"{kind}s:")
        for item in registry.listing():
            if item.error:
                broken += 1
                print(f"  {item.name:<22} BROKEN: {item.error}")
                continue
            print(f"  {item.name:<22} {item.description}{_origin(item.package, item.version)}")
            if args.options:
                for line in _options(registry.get(item.name)) or ["(no options)"]:
                    print(f"  {'':<22}   {line}")
    if broken:
        print(f"{broken} plugin(s) cannot be used (see BROKEN above): a suite naming one is "
              "refused; the others work", file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from harness.cache import Cache
    from harness.records.store import load_run
    from harness.run.executors import resolve_executor
    from harness.run.runner import plugins_used, run_suite

    if args.quiet:  # tqdm (ours, and the judge model's loaders) reads its defaults from here
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    check_folders(args)  # the folders first: no suite check, let alone training, in vain
    if args.executor == "ray":  # and the cluster: a wrong address or token fails in seconds
        from harness.run.ray_executor import check_ray

        check_ray(args.address)
    print(f"wsfm-bench: checking the suite {args.suite or '(default)'} ...", flush=True)
    suite = build_suite(args)  # every check happens here, before anything is written
    if args.until_decided and suite.rules().max_seeds is None:
        raise ConfigError("--until-decided needs [evidence] max_seeds in the suite: the most "
                          "evaluation seeds a task may get (e.g. max_seeds = 20)")
    local = [f"{kind} {name!r}" for kind, used in plugins_used(suite).items()
             for name, where in used.items() if not where["package"]]
    executor = resolve_executor(args.executor, args.workers, args.address, suite.device,
                                suite.threads, args.exclusive_timing or suite.exclusive_timing,
                                in_process=local)
    run_dir = run_suite(suite, out_dir=args.out, run_id=args.run_id,
                        cache=Cache(args.cache) if args.cache else None,
                        progress=not args.quiet, executor=executor,
                        until_decided=args.until_decided)
    print(f"records: {run_dir / 'records.csv'}")
    if not args.no_report:
        from harness.report.document import write_report

        print(f"report:  {write_report(run_dir)}")
    return _exit_code(load_run(run_dir))


def check_folders(args: argparse.Namespace) -> None:
    """--out, --run-id and the cache folder, before any work: each a folder this process can
    write into (or create), the run id a plain folder name, its folder empty or a run."""
    from harness.cache import default_cache_dir
    from harness.checks import writable_folder
    from harness.run.runner import run_folder

    if args.run_id is None:  # the suite's name gives it: checked with the suite
        writable_folder(args.out, "--out", " for the results")
    else:
        run_folder(args.out, args.run_id)
    writable_folder(args.cache or default_cache_dir(),
                    "--cache" if args.cache else "the cache folder", " for the cache")


def _exit_code(df) -> int:
    bad = df[df["nfe_ok"] == False]  # noqa: E712 (pandas element-wise)
    if len(bad):
        print(f"error: {bad['cell_id'].nunique()} cell(s) took a different number of network "
              "calls than expected; see the report", file=sys.stderr)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.document import write_report

    print(f"report: {write_report(args.run_dir)}")
    return 0


RUN_EPILOG = """\
A suite is a TOML file: its keys (seeds, selection_seeds, budgets, [[tasks]], [[methods]],
[training], [evidence], time budgets...) are documented in the docstring of
harness/run/suite.py (python -c "import harness.run.suite as s; print(s.__doc__)"); a task's
or method's options are what `wsfm-bench list --options` shows for it."""


def make_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The command line. A subcommand whose arguments live with its code is imported only
    when it is the one asked for, so `list` and `run` start without pandas or matplotlib."""
    wanted = next((a for a in (sys.argv[1:] if argv is None else argv)
                   if not a.startswith("-")), None)
    parser = argparse.ArgumentParser(prog="wsfm-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="print every plugin with a one-line description")
    p.add_argument("kind", nargs="?", choices=list(REGISTRIES), help="only this kind")
    p.add_argument("--options", action="store_true",
                   help="also each plugin's options, with types and defaults (what a suite "
                        "may set for it)")
    p.set_defaults(func=cmd_list)
    _add_run(sub)
    p = sub.add_parser("report", help="write report.md and report.html for a run folder")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    # Subcommands whose arguments live with their code: (name, module, help).
    for name, module, text in (
        ("compare", "harness.analysis.compare", "compare two runs; exit 1 on any regression"),
        ("figures", "harness.report.publish",
         "publication figures and LaTeX tables from a stored run"),
        ("cache", "harness.cache", "list or clear cached models, drafts and pairs"),
        ("summary", "harness.report.headline",
         "the headline of a run: verdicts and speed-ups per task, draft and warm start"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        if name == wanted:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(func=mod.run)
    return parser


def _add_run(sub: Any) -> None:
    """The `run` subcommand and its arguments."""
    p = sub.add_parser("run", help="run a suite (default: the embedded default suite)",
                       epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", nargs="?", help="suite TOML file")
    p.add_argument("--task", action="append", help="task to run (repeatable)")
    p.add_argument("--method", action="append",
                   help="method[:key=value,...]; a|b gives several values (repeatable)")
    p.add_argument("--budgets", type=int, nargs="+", help="step budgets N")
    p.add_argument("--seeds", type=int, nargs="+", help="evaluation seeds (the headline's)")
    p.add_argument("--selection-seeds", type=int, nargs="+", dest="selection_seeds",
                   help="seeds the headline chooses settings on (disjoint from --seeds)")
    p.add_argument("--device", help="cpu or cuda[:N]")
    p.add_argument("--n-samples", type=int, dest="n_samples", help="samples per cell")
    p.add_argument("--threads", type=int, help="torch CPU threads (recorded)")
    p.add_argument("--train-steps", type=int, help="override training steps")
    p.add_argument("--out", default="results", help="results folder (default: results)")
    p.add_argument("--run-id", help="run folder name (default: suite name + config hash)")
    p.add_argument("--cache", help="cache folder (default: $WSFM_BENCH_CACHE or ~/.cache)")
    p.add_argument("--workers", type=int,
                   help="cells run side by side in this many worker processes (default: "
                        "$WSFM_BENCH_WORKERS, else one per CPU core, or one per visible GPU "
                        "with --device cuda; 1: in this process)")
    p.add_argument("--executor", choices=["processes", "ray"],
                   help="processes (default: on this machine) or ray (Ray tasks; needs "
                        "pip install -e '.[ray]')")
    p.add_argument("--address", help="with --executor ray: the address of an existing Ray "
                                     "cluster (default: a local instance for this run)")
    p.add_argument("--exclusive-timing", action="store_true", dest="exclusive_timing",
                   help="train side by side, then time each cell alone (wall-clock claims)")
    p.add_argument("--until-decided", action="store_true", dest="until_decided",
                   help="add evaluation seeds, in batches, to the headline's undecided rows "
                        "until each is decided or has [evidence] max_seeds (a group-sequential "
                        "design: each look tested at its share of alpha)")
    p.add_argument("--no-report", action="store_true", help="skip the report")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (status lines such as 'resuming' are still printed)")
    p.set_defaults(func=cmd_run)


def os_error_line(exc: OSError) -> str | None:
    """One line for an OSError about a path (a read-only folder, a file where a folder
    should be, a full disk): what and where, and what to do; None for any other."""
    where = exc.filename
    if exc.errno == errno.ENOSPC:
        return (f"the disk is full (no space left on device{f' writing {where}' if where else ''})"
                "; free some space (wsfm-bench cache clear --older-than DAYS frees cached "
                "models) and run the same command again")
    if where is None:
        return None
    if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        what = "permission denied" if isinstance(exc, PermissionError) else "read-only"
        return (f"cannot write {where} ({what}): make that folder writable, or give another "
                "one (run --out or --cache, $WSFM_BENCH_CACHE, compare --output, figures --out)")
    if isinstance(exc, NotADirectoryError | FileExistsError):
        return (f"{where}: a file is in the way where a folder is needed; give a path in a "
                "folder, or move that file")
    if isinstance(exc, IsADirectoryError):
        return f"{where} is a folder, but a file is needed there; give a file's path"
    return None


def main(argv: list[str] | None = None) -> int:
    """The command: errors a user can fix are one line on stderr, exit 2 (bad input) or 1 (a
    failed run); an interrupt (Ctrl-C, SIGTERM) is one line, exit 128 + the signal number."""
    args = make_parser(argv).parse_args(argv)
    try:
        return args.func(args)
    except WsfmBenchError as exc:
        print(f"wsfm-bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:  # output piped into a reader that stopped early (`| head`)
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes it at exit
        return 0
    except KeyboardInterrupt as exc:
        stop = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
        print(f"wsfm-bench: {exc or 'interrupted by ' + stop.signal_name}", file=sys.stderr)
        return stop.exit_code
    except OSError as exc:  # the last line of defence for a path the checks did not foresee
        line = os_error_line(exc)
        if line is None:
            raise
        print(f"wsfm-bench: error: {line}", file=sys.stderr)
        return 1 if exc.errno == errno.ENOSPC else 2


if __name__ == "__main__":
    sys.exit(main())
