"""RL rolls out the episode evaluation runs: whatever the model writes inside `<tool_call>`, TRL's GRPO loop hands it
to the rollout's `VisualEpisode`, the model receives evaluation's observation, the record counts the request, and the
step log's figures agree. Each test scripts the tiny model's turns (`model.generate` runs the real model for one
token, then emits the script's tokens, stopping where real generation would: at the first end-of-turn id the
trainer's generation config names, `</tool_call>` included)."""

import re

import pytest
import torch

from pxr import data, families, metrics, models, protocol, reward
from pxr.config import EpisodeConfig, RewardConfig, RLConfig
from pxr.evaluation.benchmarks import get_benchmark
from pxr.evaluation.evaluate import score_trajectory
from pxr.rollout import apply_turn, start_trajectory
from pxr.synthesis import synth_run
from pxr.training import rl, rl_env
from tests.conftest import family_episode_config

EPISODE = EpisodeConfig(image_max_pixels=64 * 784, crop_max_pixels=64 * 784)
BOX = [0.2, 0.2, 0.6, 0.6]
ZOOM = "Looking closer.\n" + protocol.tool_call_text("zoom_in", {"bbox_2d": BOX})
ANSWER = "It is \\boxed{3}."


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = synth_run.smoke_dataset(tmp_path_factory.mktemp("data"), seed=0)
    queries, _ = data.read_jsonl(root / synth_run.RL_QUERIES, data.RLQuery)
    return root, queries


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


class Script:
    """Replaces `model.generate`: turn k of every rollout is `turns[k]` (the last one repeats); records the text of
    every context the model was asked to continue."""

    def __init__(self, model, tokenizer, turns):
        self.model, self.tokenizer, self.contexts = model, tokenizer, []
        self.choose = turns if callable(turns) else lambda context, i: turns[min(context.count("<tool_response>"),
                                                                                 len(turns) - 1)]  # fmt: skip
        self.real = model.generate
        model.generate = self

    def __call__(self, input_ids=None, attention_mask=None, **kwargs):
        self.real(input_ids=input_ids, attention_mask=attention_mask, **{**kwargs, "max_new_tokens": 1})
        eos = kwargs["generation_config"].eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos])
        rows = []
        for i, ids in enumerate(input_ids):
            context = self.tokenizer.decode(ids[attention_mask[i].bool()])
            self.contexts.append(context)
            turn = self.choose(context, i)
            tokens = self.tokenizer(turn + "<|im_end|>")["input_ids"]
            stop = next(k for k, t in enumerate(tokens) if t in eos)  # where real generation stops
            rows.append(tokens[: stop + 1])
        width = max(map(len, rows))
        new = torch.tensor([r + [self.tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], dim=1)

    def observations(self) -> list[str]:
        """The observation text of every tool response the model was shown, images left out."""
        found = []
        for context in self.contexts:
            found += re.findall(r"<tool_response>\n?(.*?)\n?</tool_response>", context, re.DOTALL)
        return [re.sub(r"<\|vision_start\|>.*?<\|vision_end\|>", "", o, flags=re.DOTALL).strip() for o in found]


def run_steps(root, queries, tiny_dir, out, turns, episode_config=EPISODE, capture=None, **config):
    model, processor = models.load_model(tiny_dir, episode_config=episode_config, device="cpu", dtype="float32")
    script = Script(model, processor.tokenizer, turns)
    settings = {"max_steps": 1, "num_generations": 2, "per_device_train_batch_size": 2, "save_steps": 100, **config}
    trainer = rl.make_trainer(model, processor, queries, data_root=root, output_dir=out, episode_config=episode_config,
                              reward_config=RewardConfig(), rl_config=RLConfig(**settings))  # fmt: skip
    if capture is not None:
        original = trainer._generate_and_score_completions

        def generate_and_score(inputs):
            output = original(inputs)
            capture.append(output)
            return output

        trainer._generate_and_score_completions = generate_and_score
    rl.train(trainer)
    steps = [e for e in rl.read_step_log(out / "steps.jsonl") if "pxr/rapr" in e]
    return trainer, script, steps


def evaluation_observation(root, query, turn, episode_config=EPISODE) -> str:
    """What evaluation's rollout engine answers to `turn` as the first turn of `query`."""
    trajectory = start_trajectory(data.query_from_rl(query, root), episode_config)
    apply_turn(trajectory, turn, 10)
    return trajectory.turns[-1].text


@pytest.mark.parametrize(
    "name, arguments",
    [
        ("crop_image", {"bbox_2d": BOX}),  # a released alias: runs
        ("crop_image_normalized", {"bbox_2d": BOX, "target_image": 1}),  # the other alias: runs
        ("magnify", {"bbox_2d": BOX}),  # unknown name
        ("zoom_in", {"bbox": BOX}),  # wrong argument name
    ],
)
@pytest.mark.slow
def test_every_named_call_gets_the_evaluation_observation(smoke, tiny_dir, tmp_path, name, arguments):
    """Finding 1: TRL used to answer unknown names and wrong arguments itself; the record saw no request."""
    root, queries = smoke
    turn = "Looking closer.\n" + protocol.tool_call_text(name, arguments)
    trainer, script, steps = run_steps(root, queries[:1], tiny_dir, tmp_path, [turn, ANSWER])
    expected = evaluation_observation(root, queries[0], turn)
    assert script.observations() == [expected, expected]
    records = [env.episode.record() for env in trainer.environments]
    assert [r["ops_requested"] for r in records] == [1, 1]
    runs = name != "magnify" and "bbox_2d" in arguments  # an op name (or alias) with its argument
    assert [r["ops_executed"] for r in records] == ([1, 1] if runs else [0, 0])
    (step,) = steps
    assert step["pxr/op_error_rate"] == step["tools/failure_frequency"] == (0.0 if runs else 1.0)
    assert step["pxr/calls_per_rollout"] == step["tools/call_frequency"] == 1.0


@pytest.mark.slow
def test_a_call_whose_json_does_not_parse_is_an_error_and_the_rollout_goes_on(smoke, tiny_dir, tmp_path):
    """Finding 2: TRL's parser fell back to plain text and the rollout ended; evaluation answers and continues."""
    root, queries = smoke
    turn = 'Looking closer.\n<tool_call>\n{"name": "zoom_in", "arguments": {"bbox_2d": [0.2, 0.2,}}\n</tool_call>'
    trainer, script, steps = run_steps(root, queries[:1], tiny_dir, tmp_path, [turn, ANSWER])
    expected = evaluation_observation(root, queries[0], turn)
    assert expected.startswith("Execution error: the tool call is not valid JSON")
    assert script.observations() == [expected, expected]
    assert [e.episode.ending for e in trainer.environments] == ["answer", "answer"]
    assert [e.episode.n_requested for e in trainer.environments] == [1, 1]
    assert steps[0]["pxr/op_error_rate"] == steps[0]["tools/failure_frequency"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("family", list(families.FAMILIES))
def test_two_calls_in_one_turn_run_the_first_as_evaluation_does(smoke, tmp_path, family):
    """Finding 4: generation stops at the first `</tool_call>` (the rollout engine's stop string), so the second
    call is never written, never run; the tokens are evaluation's, turn for turn, in each model family's shape."""
    root, queries = smoke
    episode = family_episode_config(family, image_max_pixels=64 * 784, crop_max_pixels=64 * 784)
    tiny = models.build_tiny_model(tmp_path / "tiny", seed=0, family=family)
    second = protocol.tool_call_text("zoom_in", {"bbox_2d": [0.5, 0.5, 0.9, 0.9]})
    turn = ZOOM + "\n" + second
    captured = []
    trainer, script, _ = run_steps(root, queries[:1], tiny, tmp_path / "run", [turn, ANSWER], episode_config=episode,
                                   capture=captured)  # fmt: skip
    assert [e.episode.n_requested for e in trainer.environments] == [1, 1]
    assert [op["arguments"]["bbox_2d"] for op in trainer.environments[0].episode.ops] == [BOX]
    # The whole rollout, prompt to answer, is the token sequence evaluation renders for the same turns.
    trajectory = start_trajectory(data.query_from_rl(queries[0], root), episode)
    apply_turn(trajectory, rl_env.cut_at_tool_call(turn), 10)
    apply_turn(trajectory, ANSWER, 10)
    processor = trainer.processing_class
    text = processor.apply_chat_template(trajectory.messages(), tokenize=False)
    expected = processor(text=[text], images=trajectory.episode.shown_images, do_resize=False)["input_ids"][0]
    output = captured[0]
    row = [int(t) for t, m in zip(output["prompt_ids"][0], output["prompt_mask"][0], strict=True) if m]
    row += [int(t) for t, m in zip(output["completion_ids"][0], output["completion_mask"][0], strict=True) if m]
    assert row == [int(t) for t in expected][: len(row)] and len(expected) - len(row) <= 1  # template's last "\n"
    schema = protocol.system_prompt("pixel", family)
    assert schema in processor.tokenizer.decode(row)  # the family's box convention is what RL's prompt declares


@pytest.mark.slow
def test_a_dropped_observation_truncates_the_rollout(smoke, tiny_dir, tmp_path):
    """Finding 3: TRL drops a tool result that would pass max_completion_length; the op had run, counted for RaPR
    and earned curiosity. Now the call is withdrawn, the rollout is truncated (reward 0) and out of the loss."""
    root, queries = smoke
    trainer, script, steps = run_steps(root, queries[:1], tiny_dir, tmp_path, [ZOOM, ANSWER], max_completion_length=40)
    assert script.observations() == []  # the crop's tokens did not fit: the model never saw it
    for env in trainer.environments:
        record = env.episode.record()
        assert record["ending"] == "truncated" and record["ops_requested"] == 1 and record["ops_executed"] == 0
        assert record["ops"][0]["withdrawn"] and record["ops_failed"] == 0 and len(record["images"]) == 1
    (step,) = steps
    assert step["pxr/truncated_share"] == 1.0 and step["pxr/rapr"] == 0.0 and step["pxr/reward_mean"] == 0.0
    assert step["pxr/rollouts_in_loss_share"] == 0.0


@pytest.mark.slow
def test_a_bare_reply_scores_the_same_in_rl_sft_and_evaluation(smoke):
    """Finding 5: "3" against gold "3" scored 0 in RL (no \\boxed{}: `no_answer`) and 1 in evaluation."""
    root, queries = smoke
    query = queries[0]
    gold = query.answer[0] if isinstance(query.answer, list) else query.answer
    env = rl_env.environment_factory(EPISODE, root)()
    env.reset(**rl_env.rl_rows([query])[0])
    facts = rl.rollout_facts(env, [{"role": "assistant", "content": str(gold)}], truncated=False)
    trajectory = start_trajectory(data.query_from_rl(query, root), EPISODE)
    apply_turn(trajectory, str(gold), 1)
    assert facts["correct"] == 1.0 and facts["record"]["ending"] == "answer"
    assert score_trajectory(trajectory, get_benchmark("synthetic-zoom")) == 1.0
    assert metrics.episode_metrics([trajectory])["accuracy"] == 1.0
    assert reward.answer_correct("answer", str(gold), query.answer)


@pytest.mark.slow
def test_after_a_limit_ends_the_episode_the_rest_is_out_of_the_loss(smoke, tiny_dir, tmp_path):
    """Evaluation stops at a limit; the rollout goes on in TRL, so what follows the refusal is masked."""
    root, queries = smoke
    config = EpisodeConfig(image_max_pixels=64 * 784, crop_max_pixels=64 * 784, max_ops=1)
    captured = []
    trainer, script, steps = run_steps(root, queries[:1], tiny_dir, tmp_path, [ZOOM, ZOOM, ANSWER],
                                       episode_config=config, capture=captured, filter_uniform_groups=False)  # fmt: skip
    observations = script.observations()
    assert "The episode ends here." in observations[-1]
    for env in trainer.environments:
        assert env.episode.ending == "limit" and env.episode.limit_reason == "max_ops" and env.ended_at_turn == 2
    output = captured[0]
    for i in range(2):
        mask = (output["tool_mask"][i] * output["completion_mask"][i]).tolist()
        ids = output["completion_ids"][i].tolist()
        kept = trainer.processing_class.tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
        assert kept.count("<tool_call>") == 2 and "boxed" not in kept  # both calls; not the answer after the end


def test_mask_after_observation():
    tool = [1, 1, 0, 0, 1, 1, 0, 1, 1, 1]
    real = [1] * 9 + [0]
    assert rl.mask_after_observation(tool, real, 1) == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert rl.mask_after_observation(tool, real, 2) == [1, 1, 0, 0, 1, 1, 0, 0, 0, 1]
    assert rl.mask_after_observation(tool, real, 3) == tool


@pytest.mark.slow
def test_uniform_groups_leave_the_gradient(smoke, tiny_dir, tmp_path):
    """Finding 7: under dr_grpo (a fixed normaliser) masking a uniform group changed nothing. With filtering the
    loss is normalised over the rollouts kept: the gradient is N/K times the unfiltered one."""
    root, queries = smoke
    first, second = queries[0], next(q for q in queries[1:] if q.question != queries[0].question)
    gold = first.answer[0] if isinstance(first.answer, list) else first.answer

    def choose(context, i):  # the first query's group: one right, one wrong; the second's: both wrong (uniform)
        return f"\\boxed{{{gold}}}" if first.question in context and i % 2 == 0 else "\\boxed{nothing}"

    norms = {}
    for filtering in (True, False):
        model, processor = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu", dtype="float32")
        Script(model, processor.tokenizer, choose)
        config = RLConfig(max_steps=1, num_generations=2, per_device_train_batch_size=4, loss_type="dr_grpo",
                          filter_uniform_groups=filtering, save_steps=100, learning_rate=0.0)  # fmt: skip
        trainer = rl.make_trainer(model, processor, [first, second], data_root=root,
                                  output_dir=tmp_path / str(filtering), episode_config=EPISODE,
                                  reward_config=RewardConfig(), rl_config=config)  # fmt: skip
        grads = []
        trainer.add_callback(_GradCallback(lambda grads=grads, model=model: grads.append(_grad_norm(model))))
        rl.train(trainer)
        (step,) = [e for e in rl.read_step_log(tmp_path / str(filtering) / "steps.jsonl") if "pxr/rapr" in e]
        assert step["pxr/filtered_group_share"] == 0.5
        norms[filtering] = grads[0]
    assert norms[False] > 0
    assert norms[True] == pytest.approx(2 * norms[False], rel=1e-4)  # 4 rollouts, 2 kept


def _grad_norm(model) -> float:
    return sum(float(p.grad.norm()) ** 2 for p in model.parameters() if p.grad is not None) ** 0.5


def _GradCallback(record):
    from transformers import TrainerCallback

    class GradCallback(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            record()

    return GradCallback()


def test_sharded_weights_without_vllm_are_refused():
    """Finding 9: under ZeRO-3 without vLLM, processes whose rollouts differ in tool turns would hang."""
    from types import SimpleNamespace

    def trainer(stage, processes=2, fsdp=False):
        plugin = SimpleNamespace(zero_stage=stage) if stage else None
        state = SimpleNamespace(deepspeed_plugin=plugin)
        return SimpleNamespace(accelerator=SimpleNamespace(num_processes=processes, state=state), is_fsdp_enabled=fsdp)

    with pytest.raises(ValueError, match="ZeRO-3 without vLLM can hang"):
        rl.check_generation_collectives(trainer(3), RLConfig())
    with pytest.raises(ValueError, match="FSDP without vLLM"):
        rl.check_generation_collectives(trainer(0, fsdp=True), RLConfig())
    rl.check_generation_collectives(trainer(3), RLConfig(use_vllm=True))  # vLLM generates: no gathering
    rl.check_generation_collectives(trainer(2), RLConfig())  # ZeRO-2 keeps whole weights on every process
    rl.check_generation_collectives(trainer(3, processes=1), RLConfig())


def test_importance_sampling_correction_is_an_explicit_parameter(tmp_path):
    """Finding 8: TRL turns it on with use_vllm; the paper has none. Off unless asked for, and in the params."""
    assert RLConfig().vllm_importance_sampling_correction is False
    assert rl.grpo_args(RLConfig(), tmp_path).vllm_importance_sampling_correction is False
    assert rl.grpo_args(
        RLConfig(vllm_importance_sampling_correction=True), tmp_path
    ).vllm_importance_sampling_correction
