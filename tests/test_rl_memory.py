"""pxr.training.rl_memory and benchmarks/rl_memory.py: parameter counts equal the built model's, the KV cache per token equals
a real forward's cache, the paper's 512 rollouts in one generate call need ~290 GiB of KV cache, and the micro-batch
params/30_train_rl/paper.yaml sets fits an 80 GB GPU where one call does not."""

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pxr import models
from pxr.runner import params
from pxr.training import rl_memory

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return models.load_model(models.build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0), device="cpu")


@pytest.mark.slow
def test_parameter_counts_are_the_built_models(tiny):
    model, processor = tiny
    shape = rl_memory.model_shape("tiny", processor.tokenizer)
    assert shape.parameters == models.count_parameters(model)
    assert shape.vision_parameters == models.count_parameters(model.model.visual)
    assert 8.2e9 < rl_memory.model_shape("7b").parameters < 8.4e9  # Qwen2.5-VL-7B: 8.29 B


def test_kv_cache_formula_is_a_real_forwards_cache(tiny):
    model, processor = tiny
    shape = rl_memory.model_shape("tiny", processor.tokenizer)
    tokens = 37
    with torch.no_grad():
        cache = model(input_ids=torch.arange(3, 3 + tokens)[None], use_cache=True).past_key_values
    held = sum(layer.keys.numel() + layer.values.numel() for layer in cache.layers)
    assert held == shape.kv_bytes_per_token_element * tokens
    run = rl_memory.RunShape(prompt_tokens=tokens, max_completion_length=0, activation_dtype="float32")
    assert rl_memory.estimate(shape, run)["KV cache per rollout"] == held * 4


def test_paper_run_needs_micro_batches_and_its_micro_batch_fits_80_gb():
    paper = params.load_params("30_train_rl", "paper")
    run = rl_memory.run_from_params(paper, text_tokens=400)
    assert run.rollouts_per_generation == 512 and run.zero_stage == 3 and run.gpus == 8
    shape = rl_memory.model_shape("7b")
    whole = rl_memory.estimate(shape, replace(run, generation_micro_batch_size=0))
    assert 280 < whole["KV cache of one generate call"] / rl_memory.GIB < 300  # the ~290 GB of one call
    assert whole["peak"] > 80e9
    assert 0 < paper["generation_micro_batch_size"] <= rl_memory.largest_micro_batch(shape, run, 80e9)
    assert rl_memory.estimate(shape, run)["peak"] < 80e9


def test_zero_sharding_divides_the_static_part():
    shape = rl_memory.model_shape("tiny")
    alone = rl_memory.estimate(shape, rl_memory.RunShape(zero_stage=0, gpus=8))
    sharded = rl_memory.estimate(shape, rl_memory.RunShape(zero_stage=3, gpus=8))
    for part in ("weights", "gradients", "optimizer states"):
        assert sharded[part] == pytest.approx(alone[part] / 8)
    assert alone["weights gathered to generate (ZeRO-3)"] == 0 < sharded["weights gathered to generate (ZeRO-3)"]
    with pytest.raises(ValueError, match="zero_stage"):
        rl_memory.estimate(shape, rl_memory.RunShape(zero_stage=4))


@pytest.mark.slow
def test_the_benchmark_prints_before_and_after():
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/rl_memory.py")], capture_output=True, text=True,
                          check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""})  # fmt: skip
    assert "one generate call" in done.stdout and "micro-batch 32" in done.stdout and "289.62" in done.stdout


@pytest.mark.slow
def test_measure_counts_a_real_generations_cache_equal_to_the_estimate():
    command = [sys.executable, str(REPO / "benchmarks/rl_memory.py"), "--size", "tiny", "--params", "", "--batch", "2",
               "--accumulation", "1", "--updates-per-generation", "1", "--micro-batch", "2",
               "--max-completion-length", "8", "--prompt-tokens", "16", "--measure"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "PATH": "", "OMP_NUM_THREADS": "1"})  # fmt: skip
    held, estimated = re.search(r"held .*?\((\d+) bytes\), estimated .*?\((\d+) bytes\)", done.stdout).groups()
    assert int(held) == int(estimated) > 0
