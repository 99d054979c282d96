"""vLLM settings of RL: each RLConfig value reaches TRL's GRPOConfig under TRL's name (defaults equal TRL's), bad values
are clear errors, and the image limit reaches the engine TRL builds in colocate mode. No vLLM needed: the engine is
replaced by a recorder."""

import pytest

from pxr.config import RLConfig
from pxr.training import rl, rl_generation


def test_vllm_settings_reach_trls_config(tmp_path):
    values = dict(vllm_mode="server", vllm_server_base_url="http://10.0.0.2:8001", vllm_server_host="10.0.0.2",
                  vllm_server_port=8001, vllm_gpu_memory_utilization=0.55, vllm_tensor_parallel_size=2,
                  vllm_max_model_length=12288, vllm_enable_sleep_mode=True, vllm_model_impl="transformers")  # fmt: skip
    args = rl.grpo_args(RLConfig(**values), tmp_path)
    assert {name: getattr(args, name) for name in values} == values
    defaults = rl.grpo_args(RLConfig(), tmp_path)
    from trl import GRPOConfig

    trl_defaults = GRPOConfig(output_dir=str(tmp_path), use_cpu=True)
    assert all(getattr(defaults, name) == getattr(trl_defaults, name) for name in rl_generation.VLLM_SETTINGS)


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(vllm_mode="remote"), "vllm_mode must be one of colocate, server"),
        (dict(vllm_gpu_memory_utilization=0.0), r"share of GPU memory in \(0, 1\]"),
        (dict(vllm_gpu_memory_utilization=1.5), r"share of GPU memory in \(0, 1\]"),
        (dict(vllm_server_port=0), "vllm_server_port must lie in 1..65535"),
        (dict(vllm_server_base_url="10.0.0.2:8000"), "must start with http"),
        (dict(vllm_tensor_parallel_size=0), "vllm_tensor_parallel_size must be >= 1"),
        (dict(vllm_max_model_length=256, max_completion_length=256), "must hold a prompt and max_completion_length"),
        (dict(vllm_model_impl="sglang"), "vllm_model_impl must be one of vllm, transformers"),
        (dict(vllm_max_images_per_prompt=-1), "vllm_max_images_per_prompt must be >= 0"),
    ],
)
def test_bad_vllm_settings_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        RLConfig(**bad)


def test_image_limit_reaches_the_colocated_engine(monkeypatch):
    from trl.generation import vllm_generation

    built = []
    monkeypatch.setattr(vllm_generation, "LLM", lambda **kwargs: built.append(kwargs), raising=False)
    with rl_generation.vllm_image_limit(6):
        vllm_generation.LLM(model="m", max_model_len=4096)  # what TRL's colocate mode calls
    vllm_generation.LLM(model="m")  # outside: as TRL calls it
    with rl_generation.vllm_image_limit(0):  # 0: vLLM's default
        vllm_generation.LLM(model="m")
    assert built == [{"model": "m", "max_model_len": 4096, "limit_mm_per_prompt": {"image": 6}}, {"model": "m"},
                     {"model": "m"}]  # fmt: skip
