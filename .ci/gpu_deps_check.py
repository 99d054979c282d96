#!/usr/bin/env python3
"""Does the GPU install resolve? `make gpu-deps-check` (or `python .ci/gpu_deps_check.py`) asks pip, in a dry run
against the package index, whether `pxr[gpu,dev,notebooks,video]` under `constraints-gpu.txt` resolves for a Linux
x86_64 GPU server, for each CPython version named (3.11 and 3.12 by default), from any machine: nothing is installed
and only metadata is downloaded (the index serves wheel metadata on its own), so it takes about a minute a version.

pip's `--platform`/`--python-version` work on wheels only, and DeepSpeed is published as an sdist only: its
metadata is built here first (`--no-deps`, a few seconds, no torch needed) and its requirements join the resolution
in its place. The local pip configuration is ignored (`--isolated`, `PIP_CONFIG_FILE=os.devnull`), so the answer is
the index's, not this machine's caches or caps; `--index-url` points it at a mirror.

On success it prints the resolved versions of the packages that matter and exits 0; otherwise it prints pip's
account of the conflict and exits 1. Tests: tests/test_gpu_deps.py (requirement gathering, the constraints files
agree); the resolution itself needs the network, so it is this command, not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("gpu", "dev", "notebooks", "video")
SDIST_ONLY = ("deepspeed",)  # no wheels on PyPI: resolved through their built metadata
GLIBC = (2, 31)  # the oldest glibc the set has wheels for (llguidance, a vLLM dependency, needs 2.31)
SHOWN = ("torch", "torchvision", "vllm", "transformers", "trl", "deepspeed", "accelerate", "peft", "datasets",
         "huggingface-hub", "tokenizers", "numpy", "flashinfer-python", "tensorboard")  # fmt: skip


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalize(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def project_requirements(pyproject: Path, extras=EXTRAS) -> list[str]:
    """The project's dependencies plus those of `extras`, as written in pyproject.toml."""
    import tomllib  # Python 3.11+

    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise SystemExit(f"pyproject.toml has no extra {', '.join(unknown)} (extras: {', '.join(optional)})")
    return list(project["dependencies"]) + [r for e in extras for r in optional[e]]


def pinned_version(constraints: Path, name: str) -> str:
    for line in constraints.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if requirement and requirement_name(requirement) == normalize(name) and "==" in requirement:
            return requirement.split("==", 1)[1].strip()
    raise SystemExit(f"{constraints.name} pins no version of {name}: add `{name}==X` there")


def pip(args: list[str], index_url: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_CONFIG_FILE": os.devnull}
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--disable-pip-version-check", "--dry-run",
               "--ignore-installed", "--progress-bar", "off", "--index-url", index_url, *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env)


def check_pip(oldest=(23, 3)) -> None:
    """Older pips download whole wheels (gigabytes of CUDA libraries) instead of the index's metadata files."""
    from importlib.metadata import version

    found = tuple(int(part) for part in re.findall(r"\d+", version("pip"))[:2])
    if found < oldest:
        raise SystemExit(f"pip {version('pip')} is too old for a metadata-only dry run: "
                         f"`{sys.executable} -m pip install -U pip`, then run `make gpu-deps-check` again")  # fmt: skip


def report(path: Path) -> dict[str, dict]:
    return {normalize(i["metadata"]["name"]): i for i in json.loads(path.read_text())["install"]}


def sdist_requirements(name: str, version: str, index_url: str, work: Path) -> list[str]:
    """`name==version`'s own requirements (extras left out), read from metadata built from its sdist."""
    out = work / f"{name}.json"
    done = pip(["--no-deps", "--report", str(out), f"{name}=={version}"], index_url)
    if done.returncode:
        raise SystemExit(f"could not read {name}=={version}'s metadata from the index:\n{done.stderr.strip()}")
    requires = report(out)[normalize(name)]["metadata"].get("requires_dist", [])
    return [r for r in requires if "extra ==" not in r]


def resolution_requirements(requirements: list[str], sdists: dict[str, list[str]]) -> list[str]:
    """`requirements` with each sdist-only package replaced by its own requirements."""
    kept = [r for r in requirements if requirement_name(r) not in sdists]
    return kept + [r for requires in sdists.values() for r in requires]


def platform_flags(glibc=GLIBC) -> list[str]:
    """pip takes the platform tags literally: every manylinux tag a glibc-`glibc` x86_64 machine accepts."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 4, -1)]
    tags += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    return [flag for tag in tags for flag in ("--platform", tag)]


def conflict(output: str) -> str:
    """pip's account of why it failed: its conflict explanation and errors, without the download chatter."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("The conflict is caused by")), None)
    kept = lines[start:] if start is not None else [line for line in lines if line.startswith("ERROR")]
    return "\n".join(line for line in kept if line.strip() and not line.startswith(("To fix", "1. ", "2. ")))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", nargs="+", default=["3.11", "3.12"], help="CPython versions to resolve for")
    parser.add_argument("--constraints", type=Path, default=ROOT / "constraints-gpu.txt")
    parser.add_argument("--index-url", default="https://pypi.org/simple")
    args = parser.parse_args(argv)
    check_pip()
    start = time.perf_counter()
    requirements = project_requirements(ROOT / "pyproject.toml")
    with tempfile.TemporaryDirectory(prefix="pxr-gpu-deps-") as tmp:
        work = Path(tmp)
        sdists = {n: sdist_requirements(n, pinned_version(args.constraints, n), args.index_url, work)
                  for n in SDIST_ONLY if any(requirement_name(r) == n for r in requirements)}  # fmt: skip
        wanted = resolution_requirements(requirements, sdists)
        resolved = {}
        for version in args.python:
            out = work / f"py{version}.json"
            done = pip(["--only-binary=:all:", *platform_flags(), "--python-version", version, "--implementation",
                        "cp", "-c", str(args.constraints), "--report", str(out), *wanted], args.index_url)  # fmt: skip
            if done.returncode:
                print(f"FAILED: pxr[{','.join(EXTRAS)}] with {args.constraints.name} does not resolve for CPython "
                      f"{version} on Linux x86_64 (glibc {GLIBC[0]}.{GLIBC[1]}+). pip says:\n\n{conflict(done.stdout + done.stderr)}\n\n"
                      f"Change the versions in {args.constraints.name} (or the [gpu] extra in pyproject.toml) "
                      "and run `make gpu-deps-check` again.", file=sys.stderr)  # fmt: skip
                return 1
            resolved[version] = {name: item["metadata"]["version"] for name, item in report(out).items()}
    for versions in resolved.values():  # resolved through their requirements, so absent from pip's report
        versions.update({name: f"{pinned_version(args.constraints, name)} (sdist)" for name in sdists})
    print(
        f"pxr[{','.join(EXTRAS)}] with {args.constraints.name} resolves on {args.index_url} for Linux x86_64 "
        f"(glibc {GLIBC[0]}.{GLIBC[1]}+), in {time.perf_counter() - start:.0f} s:"
    )
    print(f"  {'package':<18}" + "".join(f"{'py' + v:>16}" for v in resolved))
    for name in SHOWN:
        print(f"  {name:<18}" + "".join(f"{r.get(normalize(name), '-'):>16}" for r in resolved.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
