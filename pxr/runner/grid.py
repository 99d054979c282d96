"""Ablation grids (the paper's §5.2 ablations, the toy line's learning-trap map): `params/<stem>/grid_<name>.yaml`
expands into named runs of one stage.

    extends: toy                           # the base run of every point (its params file, after base.yaml)
    labels: {curiosity_coef: alpha}        # optional short axis names for the point names
    axes:                                  # parameter -> values; the points are every combination
      curiosity_coef: [0.0, 0.5]
      sft_dir: {sc: outputs/20_train_sft/toy, nosc: outputs/20_train_sft/toy_no_correction}
    name: "{extends}_a{curiosity_coef}"    # optional template; fields are the axes' labels of the values
    runs:                                  # optional extra points, name -> overrides
      toy_penalty_only: {curiosity_coef: 0.0}

An axis is a list of values or a mapping `label -> value` (a path reads badly in a run name, so it gets a label).
Point names default to `<extends>_<axis label><value>-...` (e.g. `toy_alpha0-H0.3-beta0.05`): stable (axis
order as written, values formatted the same way every time), filename-safe and checked unique. A point runs as
`run_stage(stem, extends, values=..., output_name=point)`: parameters from the base run plus the point's values,
outputs in `outputs/<stem>/<point>/`; no params file is written. `pxr grid` runs the points one after another, or
`--parallel N` at a time on N GPUs, one `pxr run ... --as <point>` subprocess per point with its own
`CUDA_VISIBLE_DEVICES`.

Tests: tests/test_grid.py.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pxr.runner import params as P

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GRID_KEYS = {"extends", "axes", "labels", "name", "runs"}


class GridError(P.ParamError):
    """A grid file that cannot be expanded; the message says what to change."""


@dataclass(frozen=True)
class GridPoint:
    name: str  # the output folder under outputs/<stem>/
    base: str  # the run whose params file the point starts from
    values: dict[str, Any] = field(default_factory=dict)  # parameter overrides of this point

    def overrides(self) -> list[str]:
        """The values as `key=value` arguments of `pxr run` (YAML values, read back the same)."""
        return [
            f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
            for k, v in self.values.items()
        ]


def format_value(value: Any) -> str:
    """A value as it appears in a point name: `0.0` -> `0`, `0.05` -> `0.05`, True -> `on`, a path -> its last
    part, anything else made filename-safe."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value)
    text = Path(str(value)).name if "/" in str(value) else str(value)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "none"


def _axis_entries(name: str, axis: Any) -> list[tuple[str, Any]]:
    """(label in the point name, value) for each value of an axis."""
    if isinstance(axis, dict):
        entries = [(str(label), value) for label, value in axis.items()]
    elif isinstance(axis, list):
        entries = [(format_value(value), value) for value in axis]
    else:
        raise GridError(f"axis {name!r} must be a list of values or a mapping label -> value, got {axis!r}")
    if not entries:
        raise GridError(f"axis {name!r} has no values")
    return entries


def expand_grid(spec: dict[str, Any]) -> list[GridPoint]:
    """Every combination of the axes (the first axis varying slowest), then the explicit `runs`; pure."""
    unknown = set(spec) - _GRID_KEYS
    if unknown:
        raise GridError(f"grid keys {sorted(unknown)} are unknown; a grid has {sorted(_GRID_KEYS)}")
    base = spec.get("extends")
    if not isinstance(base, str) or not base:
        raise GridError("a grid must say which run its points start from: `extends: <run>`")
    axes = spec.get("axes") or {}
    labels = spec.get("labels") or {}
    if not isinstance(axes, dict) or not isinstance(labels, dict):
        raise GridError("`axes` and `labels` must map parameter names to values")
    if not axes and not spec.get("runs"):
        raise GridError("a grid needs `axes` or `runs`")
    template = spec.get("name")
    entries = {axis: _axis_entries(axis, values) for axis, values in axes.items()}
    points = []
    for combination in itertools.product(*entries.values()) if entries else []:
        values = {axis: value for axis, (_, value) in zip(entries, combination, strict=True)}
        shown = {axis: label for axis, (label, _) in zip(entries, combination, strict=True)}
        points.append(GridPoint(_point_name(base, shown, labels, template), base, values))
    for name, values in (spec.get("runs") or {}).items():
        if not isinstance(values, dict):
            raise GridError(f"extra run {name!r} must map parameter names to values, got {values!r}")
        points.append(GridPoint(str(name), base, dict(values)))
    _check_names(points, base)
    return points


def _point_name(base: str, shown: dict[str, str], labels: dict[str, str], template: str | None) -> str:
    if template is None:
        return base + "_" + "-".join(f"{labels.get(axis, axis)}{label}" for axis, label in shown.items())
    try:
        return template.format(extends=base, **shown)
    except (KeyError, IndexError, ValueError) as err:
        raise GridError(
            f"name template {template!r} cannot be filled ({err}); its fields are extends and the axes"
        ) from None


def _check_names(points: list[GridPoint], base: str) -> None:
    seen: dict[str, GridPoint] = {}
    for point in points:
        if not _SAFE_NAME.match(point.name):
            raise GridError(f"point name {point.name!r} is not filename-safe (letters, digits, . _ - only)")
        if point.name == base:
            raise GridError(f"point {point.name!r} would overwrite its base run's outputs; name it otherwise")
        if point.name in seen:
            raise GridError(
                f"two points are named {point.name!r} ({seen[point.name].values} and {point.values}); "
                "use labels or a name template that tells them apart"
            )
        seen[point.name] = point


def grid_path(stem: str, grid: str) -> Path:
    name = grid if grid.startswith("grid_") else f"grid_{grid}"
    return P.repo_root() / "params" / stem / f"{name.removesuffix('.yaml')}.yaml"


def grid_names(stem: str) -> list[str]:
    return sorted(p.stem.removeprefix("grid_") for p in (P.repo_root() / "params" / stem).glob("grid_*.yaml"))


def resolve_grid(stem_or_path: str, grid: str | None) -> tuple[str, Path]:
    """`30_train_rl curiosity`, `30 grid_curiosity` or `params/30_train_rl/grid_curiosity.yaml` -> (stem, file)."""
    if grid is None:
        path = Path(stem_or_path)
        if path.suffix != ".yaml" or not path.stem.startswith("grid_"):
            raise GridError(f"{stem_or_path!r}: give a stem and a grid name, or a params/<stem>/grid_<name>.yaml")
        stem, grid = P.resolve_stem(path.parent.name), path.stem
    else:
        stem = P.resolve_stem(stem_or_path)
    path = grid_path(stem, grid)
    if not path.exists():
        raise GridError(f"no grid file {path}; grids of {stem}: {', '.join(grid_names(stem)) or 'none'}")
    return stem, path


def load_grid(stem: str, path: Path) -> list[GridPoint]:
    """The points of a grid file, each checked against the notebook's parameters (a typo fails before any run)."""
    spec = P._read_yaml(path)
    points = expand_grid(spec)
    known = set(P.run_names(stem))
    for point in points:
        if point.name in known:
            raise GridError(f"point {point.name!r} of {path.name} has the name of a params file of {stem}")
        P.validate(stem, point.values)
    return points


def select(points: list[GridPoint], only: str | None) -> list[GridPoint]:
    """The points whose names match the shell pattern `only` (all when None)."""
    return [p for p in points if only is None or fnmatch.fnmatchcase(p.name, only)]


def gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    import torch

    return torch.cuda.device_count()


def gpu_ids() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(gpu_count())]


def point_command(stem: str, point: GridPoint) -> list[str]:
    """The `pxr run` command line of one point, as a parallel grid launches it."""
    command = [sys.executable, "-m", "pxr.runner.cli", "run", stem, point.base, "--as", point.name]
    for override in point.overrides():
        command += ["-p", override]
    return command


def parallel_plan(stem: str, points: list[GridPoint], devices: list[str]) -> list[tuple[str, list[str]]]:
    """(CUDA_VISIBLE_DEVICES, command) per point: point i gets device i mod len(devices) (one GPU each)."""
    if not devices:
        raise GridError("--parallel needs GPUs and none is visible; run the grid without it")
    return [(devices[i % len(devices)], point_command(stem, p)) for i, p in enumerate(points)]


def run_parallel(plan: list[tuple[str, list[str]]], slots: int) -> list[int]:
    """Run the plan with at most `slots` commands at once, never two on the same device; exit codes in order."""
    waiting = list(enumerate(plan))
    running: dict[int, tuple[str, subprocess.Popen]] = {}
    codes = [0] * len(plan)
    while waiting or running:
        busy = {device for device, _ in running.values()}
        for item in list(waiting):
            index, (device, command) = item
            if len(running) < slots and device not in busy:
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": device}
                print(f"[pxr] gpu {device}: {' '.join(command[2:])}")
                running[index] = (device, subprocess.Popen(command, env=env, cwd=P.repo_root()))
                busy.add(device)
                waiting.remove(item)
        for index, (_, process) in list(running.items()):
            if process.poll() is not None:
                codes[index] = process.returncode
                del running[index]
        time.sleep(1.0)
    return codes
