"""The `pxr` command: run a notebook stage or the pipeline with params files, inspect parameters,
list runs.

    pxr run 20_train_sft paper -p learning_rate=2e-6     # outputs/20_train_sft/paper/
    pxr pipeline smoke [--force]                          # every stage with params/<stem>/smoke.yaml, in order
    pxr params 00_visual_ops_tour smoke                   # the notebook's parameters and the merged values
    pxr grid 30_train_rl curiosity [--dry-run] [--only 'toy_alpha0-*'] [--parallel 4]   # an ablation grid
    pxr runs                                              # what ran, its state, duration, headline metric

A run whose record git keeps (not smoke) starts only from committed code; --allow-dirty overrides, and the record
says git_dirty: true.

Tests: tests/test_cli.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from pxr.runner import grid, runs
from pxr.runner import params as P


def _table(rows: list[dict], columns: list[str]) -> str:
    cells = [[str(r.get(c, "") if r.get(c) is not None else "") for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def cmd_run(args) -> int:
    result = runs.run_stage(args.stem, args.run, args.param, output_name=args.output_name, log_output=args.log_output)
    print(f"[pxr] {result.stem}/{result.run} {result.state} in {result.seconds:.1f}s -> {result.output_dir}")
    if result.note:
        print(f"[pxr] partial: {result.note}")
    return 0


def cmd_pipeline(args) -> int:
    results = runs.run_pipeline(args.run, force=args.force, log_output=args.log_output)
    rows = [
        {"stage": r.stem, "state": r.state, "seconds": f"{r.seconds:.1f}", "results": str(r.output_dir)}
        for r in results
    ]
    print("\n" + _table(rows, ["stage", "state", "seconds", "results"]))
    return 0


def cmd_params(args) -> int:
    stem = P.resolve_stem(args.stem)
    declared = P.notebook_parameters(stem)
    merged = runs.stage_params(stem, args.run, args.param) if args.run else {}
    rows = [
        {
            "name": name,
            "default": d["default"],
            "value": repr(merged[name]) if name in merged else "",
            "help": d["help"],
        }
        for name, d in declared.items()
    ]
    print(f"{stem}: runs {', '.join(P.run_names(stem)) or '(none)'}\n")
    print(_table(rows, ["name", "default", "value", "help"] if args.run else ["name", "default", "help"]))
    return 0


def cmd_runs(args) -> int:
    every = runs.list_runs()
    rows = [r for r in every if r["stage"].startswith(args.stage or "") and r["run"] == (args.run or r["run"])]
    if rows:
        print(_table(rows, ["stage", "run", "state", "duration", "headline", "started"]))
        return 0
    if not every:
        print("no runs under outputs/ yet: `pxr run <stage> <run>` or `pxr pipeline smoke` makes one")
        return 0
    stages = sorted({r["stage"] for r in every})
    if args.stage and not any(s.startswith(args.stage) for s in stages):
        print(f"no stage starts with {args.stage!r}; stages with runs: {', '.join(stages)}", file=sys.stderr)
        return 1
    names = sorted({r["run"] for r in every if r["stage"].startswith(args.stage or "")})
    where = f" of {args.stage}" if args.stage else ""
    print(f"no run named {args.run!r}{where}; runs{where}: {', '.join(names)}", file=sys.stderr)
    return 1


def cmd_grid(args) -> int:
    stem, path = grid.resolve_grid(args.stem, args.grid)
    points = grid.select(grid.load_grid(stem, path), args.only)
    todo = [
        p
        for p in points
        if args.force or runs.finished_before(stem, p.base, values=p.values, output_name=p.name) is None
    ]
    rows = [
        {"point": p.name, "todo": "run" if p in todo else "skip (finished)", "values": " ".join(p.overrides())}
        for p in points
    ]
    print(f"{stem} {path.name}: {len(points)} points, {len(todo)} to run\n")
    print(_table(rows, ["point", "todo", "values"]))
    if args.dry_run or not todo:
        return 0
    devices = grid.gpu_ids() if args.parallel > 1 else []
    not_run = 0
    if args.parallel > 1 and devices:
        plan = grid.parallel_plan(stem, todo, devices[: args.parallel])
        codes = grid.run_parallel(plan, args.parallel)
        failed = [p.name for p, code in zip(todo, codes, strict=True) if code]
    else:
        if args.parallel > 1:
            print("[pxr] no GPU visible: the points run one after another")
        failed, causes = [], []
        for number, point in enumerate(todo, start=1):
            print(f"[pxr] {stem}/{point.name}: running")
            try:
                runs.run_stage(
                    stem, point.base, values=point.values, output_name=point.name, log_output=args.log_output
                )
            except runs.StageFailed as err:
                print(f"pxr: {err}", file=sys.stderr)
                failed.append(point.name)
                causes.append(err.cause.replace(point.name, "<point>"))
                if not args.keep_going and causes.count(causes[-1]) >= 2:
                    not_run = len(todo) - number
                    print(
                        f"pxr: two points failed the same way ({causes[-1].splitlines()[0]}); stopped with {not_run} "
                        "points not run. Fix the cause and run the grid again (finished points are skipped), "
                        "or pass --keep-going",
                        file=sys.stderr,
                    )
                    break
    finished = len(todo) - len(failed) - not_run
    print(f"[pxr] grid done: {finished} finished, {len(failed)} failed {' '.join(failed)}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pxr", description="Pixel Reasoner notebooks, run with params files.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one notebook stage with params/<stem>/base.yaml + <run>.yaml")
    run.add_argument("stem", help="notebook stem or a unique prefix of it, e.g. 00_visual_ops_tour or 00")
    run.add_argument("run", help="run name: the params file stem, e.g. smoke, toy, paper")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
    run.add_argument("--log-output", action="store_true", help="stream the notebook's output to the terminal")
    run.add_argument(
        "--as", dest="output_name", metavar="NAME", help="write outputs/<stem>/NAME/ (a grid point) instead of <run>"
    )
    run.add_argument(
        "--allow-dirty", action="store_true", help="start runs whose records git keeps from uncommitted code"
    )
    run.set_defaults(func=cmd_run)

    pipe = sub.add_parser("pipeline", help="run every stage that has params/<stem>/<run>.yaml, in order")
    pipe.add_argument("run")
    pipe.add_argument("--force", action="store_true", help="redo stages that finished before")
    pipe.add_argument("--log-output", action="store_true")
    pipe.add_argument(
        "--allow-dirty", action="store_true", help="start runs whose records git keeps from uncommitted code"
    )
    pipe.set_defaults(func=cmd_pipeline)

    par = sub.add_parser("params", help="show a notebook's parameters (and the merged values of a run)")
    par.add_argument("stem")
    par.add_argument("run", nargs="?")
    par.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    par.set_defaults(func=cmd_params)

    lst = sub.add_parser("runs", help="list runs under outputs/")
    lst.add_argument("stage", nargs="?", help="only stages whose name starts with this")
    lst.add_argument("--run", help="only runs of this name (e.g. smoke)")
    lst.set_defaults(func=cmd_runs)

    grd = sub.add_parser("grid", help="run the points of params/<stem>/grid_<name>.yaml into outputs/<stem>/<point>/")
    grd.add_argument("stem", help="notebook stem (or prefix), or the grid file's path")
    grd.add_argument("grid", nargs="?", help="grid name: curiosity for grid_curiosity.yaml")
    grd.add_argument("--dry-run", action="store_true", help="list the points and what would run, run nothing")
    grd.add_argument("--force", action="store_true", help="redo points that finished with the same parameters")
    grd.add_argument("--only", metavar="PATTERN", help="only points whose name matches this shell pattern")
    grd.add_argument("--parallel", type=int, default=1, metavar="N", help="N points at once, one GPU each")
    grd.add_argument(
        "--keep-going", action="store_true", help="run every point even after two fail the same way (default: stop)"
    )
    grd.add_argument("--log-output", action="store_true")
    grd.add_argument(
        "--allow-dirty", action="store_true", help="start runs whose records git keeps from uncommitted code"
    )
    grd.set_defaults(func=cmd_grid)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "allow_dirty", False):  # through the environment, so grid points run as processes see it too
        os.environ[runs.ALLOW_DIRTY_ENV] = "1"
    try:
        return args.func(args)
    except (P.ParamError, runs.StageFailed) as err:
        print(f"pxr: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a folder pxr reads or writes is missing, unreadable or unwritable: no traceback
        print(f"pxr: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
