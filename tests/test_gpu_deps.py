"""The GPU install's offline parts (.ci/gpu_deps_check.py; the resolution itself needs the index: `make
gpu-deps-check`): what it asks pip to resolve, and constraints-gpu.txt staying constraints.txt except where vLLM's
pins decide."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_deps_check", ROOT / ".ci" / "gpu_deps_check.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)

VLLM_DECIDES = {"transformers", "numpy"}  # vLLM caps transformers; its mistral-common dependency caps numpy


def pins(path: Path) -> dict[str, str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return {check.requirement_name(line): line.split("==", 1)[1] for line in lines if line}


def test_the_resolution_covers_the_gpu_extra_and_the_cpu_extras():
    names = {check.requirement_name(r) for r in check.project_requirements(ROOT / "pyproject.toml")}
    assert {"vllm", "torchvision", "deepspeed", "torch", "transformers", "trl", "tensorboard", "pytest"} <= names


def test_gpu_constraints_are_the_cpu_ones_except_where_vllm_decides():
    cpu, gpu = pins(ROOT / "constraints.txt"), pins(ROOT / "constraints-gpu.txt")
    assert set(cpu) <= set(gpu)
    assert {name for name in cpu if cpu[name] != gpu[name]} == VLLM_DECIDES
    assert {"vllm", "torchvision", "deepspeed"} <= set(gpu)
    for name in ("vllm", "torchvision", "deepspeed"):  # the gpu extra's packages all have a pinned version
        assert check.pinned_version(ROOT / "constraints-gpu.txt", name) == gpu[name]


def test_an_sdist_only_package_resolves_through_its_own_requirements():
    requirements = ["torch>=2.6", "deepspeed>=0.18.6", "vllm>=0.32,<0.33"]
    wanted = check.resolution_requirements(requirements, {"deepspeed": ["hjson", "torch>=2.0.0"]})
    assert wanted == ["torch>=2.6", "vllm>=0.32,<0.33", "hjson", "torch>=2.0.0"]


def test_platform_tags_are_every_manylinux_tag_the_glibc_accepts():
    tags = check.platform_flags((2, 31))[1::2]
    assert {"manylinux_2_31_x86_64", "manylinux_2_5_x86_64", "manylinux2014_x86_64"} <= set(tags)
    assert "manylinux_2_32_x86_64" not in tags


def test_a_conflict_is_reported_as_pip_explains_it():
    output = (
        "Collecting vllm\n  Downloading vllm-0.32.0.whl.metadata\n"
        "ERROR: Cannot install pxr because these package versions have conflicting dependencies.\n\n"
        "The conflict is caused by:\n    vllm 0.32.0 depends on transformers<5.20\n"
        "    The user requested (constraint) transformers==5.23.0\n\n"
        "To fix this you could try to:\n1. loosen the range\n2. remove package versions\n"
    )
    assert check.conflict(output).splitlines() == [
        "The conflict is caused by:", "    vllm 0.32.0 depends on transformers<5.20",
        "    The user requested (constraint) transformers==5.23.0",
    ]  # fmt: skip
