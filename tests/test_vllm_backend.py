"""pxr.evaluation.vllm_backend against a fake `vllm` module (tests/fake_vllm/vllm.py) with the part of vLLM's API it uses: the
prompts and token ids equal the in-process backend's for the same turns, images in order (the crop after a zoom),
every unfinished episode in one generate call per round, the stop string, the same records; the data-parallel
path in two CPU processes; evaluation through the backend."""

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from pxr import models, protocol
from pxr.config import EpisodeConfig
from pxr.evaluation.evaluate import EvalConfig, evaluate
from pxr.evaluation.vllm_backend import (
    VLLMBackendConfig,
    devices_of_shard,
    generate_trajectories_vllm,
    shards,
)
from pxr.rollout import Query, RolloutConfig, generate_trajectories
from tests.test_rollout import ScriptedModel

FAKE = Path(__file__).parent / "fake_vllm"
TIMINGS = ("generate_seconds", "op_seconds")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = models.build_tiny_model(tmp_path_factory.mktemp("tiny"))
    return path, models.load_processor(path)


@pytest.fixture
def fake_vllm(monkeypatch):
    monkeypatch.syspath_prepend(str(FAKE))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)  # a real install must not answer here
    import vllm

    vllm.CALLS.clear()
    yield vllm
    sys.modules.pop("vllm", None)


class RecordingModel(ScriptedModel):
    """The scripted in-process model, also keeping each prompt's token ids, round by round."""

    def __init__(self, tokenizer, script):
        super().__init__(tokenizer, script)
        self.prompt_ids = []

    def generate(self, input_ids, attention_mask, **kwargs):
        self.prompt_ids.append([ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)])
        return super().generate(input_ids, attention_mask, **kwargs)


def queries():
    sizes = [(300, 200), (224, 336), (280, 280)]
    items = [
        Query(f"q{i}", "What digit is inside the red square?", images=[Image.new("RGB", size, (40 * i, 9, 9))],
              answer="7")
        for i, size in enumerate(sizes)
    ]  # fmt: skip
    items[1].question += " answer-at-once"
    return items


def without_timings(trajectory):
    return {k: v for k, v in trajectory.record().items() if k not in TIMINGS}


@pytest.mark.slow
def test_prompts_images_batching_and_records_match_the_in_process_backend(tiny, fake_vllm):
    path, processor = tiny
    rollout_config = RolloutConfig(max_new_tokens=100, seed=3)
    backend = VLLMBackendConfig(model=str(path), gpu_memory_utilization=0.5, max_model_len=8192)
    served = generate_trajectories_vllm(
        queries(), backend=backend, rollout_config=rollout_config, processor=processor, progress=False
    )
    local_model = RecordingModel(processor.tokenizer, fake_vllm.SCRIPT)
    local = generate_trajectories(local_model, processor, queries(), rollout_config=rollout_config, progress=False)

    engines = [fields for event, fields in fake_vllm.CALLS if event == "LLM"]
    assert engines == [
        {"model": str(path), "tensor_parallel_size": 1, "gpu_memory_utilization": 0.5, "seed": 3,
         "limit_mm_per_prompt": {"image": 1 + EpisodeConfig().max_images}, "max_model_len": 8192}
    ]  # fmt: skip
    (sampling,) = [fields for event, fields in fake_vllm.CALLS if event == "SamplingParams"]
    assert sampling["stop"] == [protocol.TOOL_CALL_CLOSE] and sampling["include_stop_str_in_output"] is True
    assert sampling["max_tokens"] == 100 and sampling["temperature"] == 0.0 and sampling["top_p"] == 1.0

    rounds = [seen for event, seen in fake_vllm.CALLS if event == "generate"]
    # round 1: all three episodes; q1 answers at once, so round 2 batches the two that zoomed
    assert [len(r) for r in rounds] == [3, 2] == [len(r) for r in local_model.prompt_ids]
    assert [[p["ids"] for p in r] for r in rounds] == local_model.prompt_ids  # the same tokens, image pads included
    for prompt, trajectory in zip(rounds[0], served, strict=True):
        (image,) = prompt["images"]
        assert image.size == trajectory.episode.entries[0].shown.size
        assert prompt["prompt"].count("<|image_pad|>") == 1 and prompt["prompt"].endswith("<|im_start|>assistant\n")
    for prompt, trajectory in zip(rounds[1], [served[0], served[2]], strict=True):
        query_image, crop = prompt["images"]
        shown = trajectory.episode.shown_images
        assert query_image.tobytes() == shown[0].tobytes() and crop.tobytes() == shown[1].tobytes()
        assert crop.size != query_image.size and "<tool_response>" in prompt["prompt"]

    assert [t.query.id for t in served] == ["q0", "q1", "q2"]
    assert [t.episode.ending for t in served] == ["answer"] * 3 and served[0].episode.n_executed == 1
    assert [without_timings(t) for t in served] == [without_timings(t) for t in local]


def test_a_turn_cut_by_max_tokens_is_truncated_as_in_process(tiny, fake_vllm):
    path, processor = tiny
    item = Query("long", "What digit? think-forever", images=[Image.new("RGB", (200, 200))], answer="7")
    config = RolloutConfig(max_new_tokens=8)
    [served] = generate_trajectories_vllm(
        [item], backend=VLLMBackendConfig(model=str(path)), rollout_config=config, processor=processor, progress=False
    )
    [local] = generate_trajectories(
        ScriptedModel(processor.tokenizer, fake_vllm.SCRIPT, eos=False), processor, [item], rollout_config=config,
        progress=False,
    )  # fmt: skip
    assert served.episode.ending == "truncated" and served.generated_tokens == 8
    assert without_timings(served) == without_timings(local)


def test_missing_vllm_names_the_install_command(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # what an absent package looks like to `import`
    with pytest.raises(ImportError, match=r'pip install -e "\.\[gpu\]"'):
        generate_trajectories_vllm(queries(), backend=VLLMBackendConfig(model=str(tiny[0])), progress=False)


def test_evaluation_through_the_vllm_backend_records_its_settings(tiny, fake_vllm):
    path, processor = tiny
    config = EvalConfig(benchmark="jsonl", backend="vllm", model_path=str(path), vllm_tensor_parallel_size=1,
                        vllm_max_model_len=4096)  # fmt: skip
    result = evaluate(queries(), config, processor=processor, progress=False)
    m = result.metrics
    assert m["backend"] == "vllm" and m["model"] == str(path) and m["items"] == 3
    assert m["vllm_max_model_len"] == 4096 and m["vllm_data_parallel_size"] == 1
    assert m["vllm_gpu_memory_utilization"] == 0.9 and m["vllm_tensor_parallel_size"] == 1
    assert [r["score"] for r in result.records] == [1.0, 0.0, 1.0]  # q1 answers 3


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="model_path"):
        EvalConfig(backend="vllm")
    with pytest.raises(ValueError, match="vllm_tensor_parallel_size"):
        EvalConfig(backend="vllm", model_path="m", vllm_tensor_parallel_size=0)
    with pytest.raises(ValueError, match="vllm_gpu_memory_utilization"):
        EvalConfig(backend="vllm", model_path="m", vllm_gpu_memory_utilization=1.5)
    with pytest.raises(ValueError, match="vllm_max_model_len"):
        EvalConfig(backend="vllm", model_path="m", vllm_max_model_len=-1)


def test_shards_are_contiguous_and_each_engine_gets_its_own_gpus():
    assert shards(7, 3) == [range(0, 3), range(3, 5), range(5, 7)]
    assert shards(2, 4) == [range(0, 1), range(1, 2)]  # no empty shard, no idle engine started
    assert [devices_of_shard(k, 2, None) for k in range(4)] == ["0,1", "2,3", "4,5", "6,7"]
    assert [devices_of_shard(k, 1, "4, 5,7") for k in range(3)] == ["4", "5", "7"]
    with pytest.raises(ValueError, match="engine 1 needs GPUs 2..3"):
        devices_of_shard(1, 2, "0,1,2")


@pytest.mark.slow
def test_data_parallel_runs_one_engine_per_process_on_its_gpus(tiny, fake_vllm, tmp_path, monkeypatch):
    path, processor = tiny
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_VLLM_LOG", str(log))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    backend = VLLMBackendConfig(model=str(path), tensor_parallel_size=2, data_parallel_size=2)
    served = generate_trajectories_vllm(queries(), backend=backend, progress=False)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    engines = [c for c in calls if c["event"] == "LLM"]
    assert sorted(c["cuda"] for c in engines) == ["4,5", "6,7"] and len({c["pid"] for c in engines}) == 2
    assert all(c["tensor_parallel_size"] == 2 for c in engines)
    counts = {c["cuda"]: [] for c in engines}
    for c in calls:
        if c["event"] == "generate-count":
            counts[c["cuda"]].append(c["n"])
    assert counts == {"4,5": [2, 1], "6,7": [1, 1]}  # shard q0,q1 (q1 answers at once) and shard q2
    single = generate_trajectories_vllm(
        queries(), backend=VLLMBackendConfig(model=str(path)), processor=processor, progress=False
    )
    assert [t.query.id for t in served] == ["q0", "q1", "q2"]
    assert [without_timings(t) for t in served] == [without_timings(t) for t in single]
