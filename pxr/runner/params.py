"""Run parameters: `params/<stem>/base.yaml`, then the run's line (`params/lines/<line>.yaml`, when the run file
says `line: <line>`), then `<run>.yaml`, then `-p key=value` overrides, checked against the notebook's `parameters`
cell.

A line is what every stage of one experiment shares, e.g. the toy episode (query budget, zoom padding, crop size):
written once, read by each stage that declares the setting, so synthesis, training and evaluation cannot drift
apart. A line's key that no notebook declares is an error, as a run file's unknown key is.

Papermill only warns about a name the notebook does not define, so a typo in a YAML file would silently do
nothing; here it is an error that names the close matches. Values are checked against the type of the notebook's
default as well.

Tests: tests/test_params.py.
"""

from __future__ import annotations

import ast
import difflib
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parents[1]


class ParamError(ValueError):
    """Parameters that do not fit the notebook; the message says what to change."""


def repo_root() -> Path:
    """The checkout that holds notebooks/ and params/: the package's parent (editable install) or the cwd's."""
    for candidate in (PACKAGE_DIR.parent, Path.cwd(), *Path.cwd().parents):
        if (candidate / "notebooks").is_dir() and (candidate / "params").is_dir():
            return candidate
    raise ParamError("cannot find the pxr checkout (a folder with notebooks/ and params/); run pxr from inside it")


def stems() -> list[str]:
    """Notebook stems in pipeline order (their numeric prefixes)."""
    return sorted(p.stem for p in (repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def resolve_stem(name: str) -> str:
    """A full stem, or a unique prefix of one (`00`, `00_visual`)."""
    known = stems()
    if name in known:
        return name
    matches = [s for s in known if s.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    hint = f"it matches {', '.join(matches)}" if matches else f"notebooks are: {', '.join(known)}"
    raise ParamError(f"unknown notebook {name!r}; {hint}")


def notebook_path(stem: str) -> Path:
    return repo_root() / "notebooks" / f"{stem}.ipynb"


def notebook_parameters(stem: str) -> dict[str, dict[str, Any]]:
    """The notebook's parameters: name -> {default (source text), type, help}, from its `parameters` cell."""
    path = notebook_path(stem)
    return _inspect(str(path), path.stat().st_mtime_ns)


@cache
def _inspect(path: str, _mtime: int) -> dict[str, dict[str, Any]]:
    import papermill  # imported here: it pulls in nbclient and jupyter machinery

    found = papermill.inspect_notebook(path)
    if not found:
        raise ParamError(f"{path} has no cell tagged `parameters`")
    return {name: {"default": p["default"], "type": _type_name(p), "help": p["help"]} for name, p in found.items()}


def _type_name(declared: dict[str, Any]) -> str:
    """The parameter's type: papermill's (from an annotation) or that of its literal default."""
    if declared["inferred_type_name"] not in ("None", None):
        return declared["inferred_type_name"]
    try:
        default = ast.literal_eval(declared["default"])
    except (ValueError, SyntaxError):
        return "unknown"
    return "None" if default is None else type(default).__name__


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-6` as a string; research configs mean a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)$|^[-+]?(?:\d+\.\d*|\.\d+)$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def run_names(stem: str) -> list[str]:
    return sorted(p.stem for p in (repo_root() / "params" / stem).glob("*.yaml") if not p.stem.startswith("grid_"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = _load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ParamError(f"{path} must map parameter names to values, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` with the value read as YAML (`lr=1e-6`, `names=[a, b]`, `path=runs/x`)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ParamError(f"override {text!r} is not of the form key=value")
    try:
        return key.strip(), _load_yaml(value)
    except yaml.YAMLError:
        return key.strip(), value


def _run_file(folder: Path, stem: str, run: str, seen: tuple[str, ...]) -> dict[str, Any]:
    """A run file's values; `extends: <run>` first takes that run's (an ablation states only its difference)."""
    path = folder / f"{run}.yaml"
    if not path.exists():
        available = ", ".join(run_names(stem)) or "none"
        raise ParamError(f"no params file {path.relative_to(repo_root())}; runs of {stem}: {available}")
    if run in seen:
        raise ParamError(f"params of {stem} extend in a circle: {' -> '.join((*seen, run))}")
    values = _read_yaml(path)
    parent = values.pop("extends", None)
    if parent is None or parent == "base":
        return values
    if not isinstance(parent, str):
        raise ParamError(f"{path.relative_to(repo_root())}: extends must name a run, got {parent!r}")
    return {**_run_file(folder, stem, parent, (*seen, run)), **values}


LINES_DIR = "lines"  # params/lines/<line>.yaml: the settings every stage of a line shares


def line_names() -> list[str]:
    return sorted(p.stem for p in (repo_root() / "params" / LINES_DIR).glob("*.yaml"))


def line_settings(line: str, stem: str) -> dict[str, Any]:
    """The settings of `line` that `stem`'s notebook declares (the others belong to other stages)."""
    path = repo_root() / "params" / LINES_DIR / f"{line}.yaml"
    if not isinstance(line, str) or not path.exists():
        raise ParamError(
            f"no line {line!r} (params/{LINES_DIR}/<line>.yaml); lines: {', '.join(line_names()) or 'none'}"
        )
    values = _read_yaml(path)
    everywhere = set().union(*(notebook_parameters(s) for s in stems()))
    if unknown := sorted(set(values) - everywhere):
        raise ParamError(f"params/{LINES_DIR}/{line}.yaml: no notebook declares {', '.join(unknown)}")
    declared = notebook_parameters(stem)
    return {k: v for k, v in values.items() if k in declared}


def load_params(stem: str, run: str, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """base.yaml, then the run's line (if its run file, or one it extends, names one), then <run>.yaml (after the
    run it `extends`, if any), then the overrides, later winning; validated against the notebook."""
    folder = repo_root() / "params" / stem
    base = folder / "base.yaml"
    params = _read_yaml(base) if base.exists() else {}
    if run != "base":
        values = _run_file(folder, stem, run, ())
        if (line := values.pop("line", None)) is not None:
            params.update(line_settings(line, stem))
        params.update(values)
    params.update(parse_override(o) for o in overrides)
    validate(stem, params)
    return params


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,)}


def validate(stem: str, params: dict[str, Any]) -> None:
    """Unknown names and values of the wrong type are errors, not warnings."""
    declared = notebook_parameters(stem)
    problems = []
    for name, value in params.items():
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=3)
            problems.append(f"unknown parameter {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
            continue
        expected = _TYPES.get(declared[name]["type"])
        wrong_bool = isinstance(value, bool) and declared[name]["type"] in ("int", "float")
        if value is not None and expected and (not isinstance(value, expected) or wrong_bool):
            problems.append(
                f"{name} = {value!r} is a {type(value).__name__}; the notebook's default {declared[name]['default']} "
                f"is a {declared[name]['type']}"
            )
    if problems:
        raise ParamError(f"parameters of {stem} rejected:\n  - " + "\n  - ".join(problems))
