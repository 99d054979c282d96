"""pxr.training.rl and pxr.training.rl_env: the environment runs ops through VisualEpisode, RL prompts equal the protocol's, the reward
path gives the paper reward's worked values (`pxr.reward.shaped_rewards`), uniform groups leave the loss, and GRPO
steps on the tiny model train with the crops in the loss forward and resume from a checkpoint."""

import json

import pytest
import torch

from pxr import data, models, protocol
from pxr.config import EpisodeConfig, RewardConfig, RLConfig
from pxr.rollout import start_trajectory
from pxr.synthesis import synth_run
from pxr.training import rl, rl_env
from tests.rl_fakes import FakeEnvironment

EPISODE = EpisodeConfig(image_max_pixels=64 * 784, crop_max_pixels=64 * 784)
ZOOM = "Looking closer.\n" + protocol.tool_call_text("zoom_in", {"bbox_2d": [0.2, 0.2, 0.6, 0.6]})


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = synth_run.smoke_dataset(tmp_path_factory.mktemp("data"), seed=0)
    queries, report = data.read_jsonl(root / synth_run.RL_QUERIES, data.RLQuery)
    assert report.skipped == 0 and len(queries) == 6
    return root, queries


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return models.build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


def environment(root, episode_config=EPISODE):
    return rl_env.environment_factory(episode_config, root)()


@pytest.mark.slow
def test_environment_shows_the_episode_and_runs_ops_through_it(smoke):
    root, queries = smoke
    env = environment(root)
    content = env.reset(**rl_env.rl_rows(queries[:1])[0])
    shown = [part["image"] for part in content if part["type"] == "image"]
    assert shown == env.episode.shown_images  # the prompt's pixels are the episode's
    assert content[-1] == {"type": "text", "text": protocol.user_text(queries[0].question, queries[0].options)}
    ok = env.zoom_in([0.1, 0.1, 0.5, 0.5])
    assert [part["type"] for part in ok] == ["text", "image"] and ok[1]["image"] is env.episode.shown_images[1]
    assert ok[0]["text"].startswith("Here is image 2")
    bad = env.zoom_in([0.5, 0.5, 0.1, 0.1])
    assert len(bad) == 1 and bad[0]["text"].startswith("Execution error:")
    wrong_op = env.select_frames([1, 2])  # an image query
    assert "works on videos only" in wrong_op[0]["text"]
    record = env._close({"role": "assistant", "content": "It is \\boxed{3}."})
    assert (record["ops_requested"], record["ops_executed"], record["ending"]) == (3, 1, "answer")


def test_tools_are_only_the_ops():
    tools = {name for name in dir(rl_env.PixelEnvironment) if not name.startswith("_") and name != "reset"}
    assert {n for n in tools if callable(getattr(rl_env.PixelEnvironment, n))} == {"zoom_in", "select_frames"}
    assert not [n for n in dir(rl_env.TextEnvironment) if not n.startswith("_") and n not in ("reset",)
                and callable(getattr(rl_env.TextEnvironment, n))]  # fmt: skip


@pytest.mark.slow
def test_an_unparsed_call_is_an_episode_turn_and_truncation_ends_it(smoke):
    root, queries = smoke
    env = environment(root)
    env.reset(**rl_env.rl_rows(queries[:1])[0])
    observation = env._take_turn('Zoom.\n<tool_call>\n{"name": "zoom_in", "argu\n</tool_call>')
    assert observation[0]["text"].startswith("Execution error: the tool call is not valid JSON")
    record = env._close({"role": "assistant", "content": "It is \\boxed{3}."}, delivered=1)
    assert (record["ops_requested"], record["ops_executed"], record["ending"]) == (1, 0, "answer")
    env.reset(**rl_env.rl_rows(queries[:1])[0])
    assert env._close({"role": "assistant", "content": "It is \\boxed{3"}, truncated=True)["ending"] == "truncated"


def test_episode_limits_hold_for_native_calls(smoke):
    root, queries = smoke
    env = environment(root, EpisodeConfig(max_ops=1))
    env.reset(**rl_env.rl_rows(queries[:1])[0])
    assert len(env.zoom_in([0.1, 0.1, 0.5, 0.5])) == 2
    refused = env.zoom_in([0.1, 0.1, 0.5, 0.5])
    assert "The episode ends here." in refused[0]["text"] and len(refused) == 1
    assert env.episode.ending == "limit" and env.episode.limit_reason == "max_ops"
    assert env._close({"role": "assistant", "content": "\\boxed{3}"})["answer"] is None  # ended by the limit


def test_pixel_reasoner_v1_is_refused_for_training(tmp_path):
    with pytest.raises(ValueError, match="released checkpoints"):
        rl_env.environment_factory(EpisodeConfig(prompt="pixel-reasoner-v1"), tmp_path)


def test_rl_prompt_is_the_protocol_prompt(smoke, tiny_dir):
    """What TRL renders (system text + the env's tools, listed alphabetically as TRL does, user turn from reset)
    equals the rollout engine's tokens."""
    root, queries = smoke
    _, processor = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu")
    env = environment(root)
    row = rl_env.rl_rows(queries[:1])[0]
    prompt = row["prompt"][:-1] + [{"role": "user", "content": env.reset(**row)}]
    rl.use_protocol_schemas(processor, "pixel")
    trl_ids = processor.apply_chat_template(
        [prompt], tools=[env.select_frames, env.zoom_in], add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"][0]
    trajectory = start_trajectory(data.query_from_rl(queries[0], root), EPISODE)
    text = processor.apply_chat_template(trajectory.messages(), add_generation_prompt=True, tokenize=False)
    ours = processor(text=[text], images=trajectory.episode.shown_images, do_resize=False)["input_ids"][0]
    assert list(trl_ids) == list(ours)
    assert protocol.system_prompt("pixel") in processor.tokenizer.decode(trl_ids)


def reward_inputs(envs, answers):
    completions = [[{"role": "assistant", "content": a}] for a in answers]
    return {"prompts": [[]] * len(envs), "completions": completions, "completion_ids": [[1, 0]] * len(envs),
            "environments": envs}  # fmt: skip


def test_reward_function_gives_the_worked_values():
    """Paper §4 reward, G = 8, all answers wrong: one op rollout +0.0875; two get +0.025 each; 3 ops cost −0.1."""
    fn = rl.make_reward_function(RewardConfig(), 8, end_token_ids=[0])
    one = [FakeEnvironment("a", 1)] + [FakeEnvironment("a", 0) for _ in range(7)]
    two = [FakeEnvironment("b", 1), FakeEnvironment("b", 1)] + [FakeEnvironment("b", 0) for _ in range(6)]
    three_ops = [FakeEnvironment("c", 3)] + [FakeEnvironment("c", 0) for _ in range(7)]
    rewards = fn(**reward_inputs(one + two + three_ops, ["\\boxed{5}"] * 24))
    assert rewards[0] == pytest.approx(0.0875) and rewards[1:8] == [0.0] * 7
    assert rewards[8:10] == pytest.approx([0.025, 0.025]) and rewards[10:16] == [0.0] * 6
    assert rewards[16] == pytest.approx(0.5 * (0.3 - 0.125) - 0.1)  # curiosity and penalty add up
    correct = fn(**reward_inputs(one, ["\\boxed{3}"] + ["\\boxed{5}"] * 7))
    assert correct[0] == pytest.approx(1.0875)


def test_reward_zero_for_truncated_and_ablations():
    envs = [FakeEnvironment("a", 1)] + [FakeEnvironment("a", 0) for _ in range(3)]
    inputs = reward_inputs(envs, ["\\boxed{3}"] * 4)
    inputs["completion_ids"] = [[1, 5]] + [[1, 0]] * 3  # the first ends without an end token: cut by the limit
    fn = rl.make_reward_function(RewardConfig(), 4, end_token_ids=[0])
    assert fn(**inputs) == [0.0, 1.0, 1.0, 1.0]
    assert fn.last[0]["truncated"] == 1.0
    no_curiosity = rl.make_reward_function(RewardConfig(curiosity_coef=0.0, penalty_coef=0.0), 4, end_token_ids=[0])
    assert no_curiosity(**reward_inputs(envs, ["\\boxed{5}"] * 4)) == [0.0] * 4


def test_groups_must_not_mix_queries():
    fn = rl.make_reward_function(RewardConfig(), 2, end_token_ids=[0])
    with pytest.raises(ValueError, match="mix queries"):
        fn(**reward_inputs([FakeEnvironment("a", 0), FakeEnvironment("b", 0)], ["x", "y"]))


def test_batch_metrics_count_filtered_groups():
    scored = rl.score_groups(
        [{"qid": q, "is_video": False, "correct": c, "record": FakeEnvironment(q, n).record}
         for q, c, n in [("a", 1.0, 1), ("a", 0.0, 0), ("b", 0.0, 0), ("b", 0.0, 0)]],
        2, RewardConfig(),
    )  # fmt: skip
    figures = rl.batch_metrics(scored, 2)
    assert figures["filtered_group_share"] == 0.5 and figures["accuracy"] == 0.25
    assert figures["rapr"] == 0.25 and figures["mean_ops"] == 0.25


def scripted_generate(model, tokenizer, zoom_every=2, call=ZOOM):
    """Replace `model.generate`: real forward passes elsewhere, but the tokens `call` an op on every `zoom_every`-th
    first turn and answer after an observation, so the tiny random model exercises the tool loop."""

    real_generate = model.generate

    def generate(input_ids=None, attention_mask=None, **kwargs):
        # One real step on exactly what TRL passes, so hooks see the generation's inputs (images included).
        real_generate(input_ids=input_ids, attention_mask=attention_mask, **{**kwargs, "max_new_tokens": 1})
        rows = []
        for i, ids in enumerate(input_ids):
            text = tokenizer.decode(ids[attention_mask[i].bool()])
            turn = "It is \\boxed{3}." if "<tool_response>" in text else call if i % zoom_every == 0 else "\\boxed{7}"
            rows.append(tokenizer(turn + "<|im_end|>")["input_ids"])
        width = max(map(len, rows))
        new = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], dim=1)

    model.generate = generate


@pytest.mark.slow
def test_grpo_steps_train_with_crops_in_the_loss_forward(smoke, tiny_dir, tmp_path):
    root, queries = smoke
    model, processor = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu", dtype="float32")
    scripted_generate(model, processor.tokenizer)
    images_in_forward = []

    def count_images(module, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        images_in_forward.append((torch.is_grad_enabled(), int(grid.shape[0])))

    model.model.visual.register_forward_pre_hook(count_images, with_kwargs=True)
    config = RLConfig(max_steps=2, num_generations=2, per_device_train_batch_size=4, save_steps=1)
    trainer = rl.make_trainer(model, processor, queries, data_root=root, output_dir=tmp_path, episode_config=EPISODE,
                              reward_config=RewardConfig(), rl_config=config)  # fmt: skip
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    rl.train(trainer)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters() if "visual" in n and n in before)
    # 4 rollouts, 2 of which zoom once: the second turn's generation gets their inputs and crops (4 images), and
    # the loss forward (the one with gradients) all 4 inputs + 2 crops.
    assert (False, 4) in images_in_forward and (True, 6) in images_in_forward
    steps = [e for e in rl.read_step_log(tmp_path / "steps.jsonl") if "pxr/rapr" in e]
    assert [e["step"] for e in steps] == [1, 2]
    assert all(e["pxr/rapr"] == 0.5 and e["tools/call_frequency"] == 0.5 for e in steps)
    # Uniform groups leave the loss: the share of rollouts in it is what the filter left.
    assert all(e["pxr/rollouts_in_loss_share"] == 1 - e["pxr/filtered_group_share"] for e in steps)

    # Resume: a longer run picks up checkpoint-2 and takes one more step; the log keeps one line per step. With a
    # learning rate of 0 for that step, the resumed model must equal the checkpoint, not the fresh weights.
    model2, processor2 = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu", dtype="float32")
    scripted_generate(model2, processor2.tokenizer)
    longer = RLConfig(max_steps=3, num_generations=2, per_device_train_batch_size=4, save_steps=1, learning_rate=0.0)
    resumed = rl.make_trainer(model2, processor2, queries, data_root=root, output_dir=tmp_path,
                              episode_config=EPISODE, reward_config=RewardConfig(), rl_config=longer)  # fmt: skip
    rl.train(resumed)
    assert resumed.state.global_step == 3
    trained = dict(model.named_parameters())
    assert all(torch.equal(trained[n], p) for n, p in model2.named_parameters() if n in before)
    steps = [e["step"] for e in rl.read_step_log(tmp_path / "steps.jsonl") if "pxr/rapr" in e]
    assert steps == [1, 2, 3]

    # Running the finished run again takes no step (transformers' Trainer would take one more mid-epoch).
    again = rl.make_trainer(model2, processor2, queries, data_root=root, output_dir=tmp_path,
                            episode_config=EPISODE, reward_config=RewardConfig(), rl_config=longer)  # fmt: skip
    assert rl.train(again).global_step == 3 and again.state.global_step == 3
    assert [e["step"] for e in rl.read_step_log(tmp_path / "steps.jsonl") if "pxr/rapr" in e] == [1, 2, 3]


def test_step_log_skips_a_half_written_line(tmp_path):
    path = tmp_path / "steps.jsonl"
    path.write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n" + '{"step": 2, "lo')
    assert rl.read_step_log(path) == [{"step": 1, "loss": 0.5}]


def test_vllm_without_vllm_is_a_clear_error(smoke, tiny_dir, tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    root, queries = smoke
    model, processor = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu")
    with pytest.raises(ValueError, match="use_vllm needs vLLM"):
        rl.make_trainer(model, processor, queries, data_root=root, output_dir=tmp_path, episode_config=EPISODE,
                        reward_config=RewardConfig(), rl_config=RLConfig(use_vllm=True))  # fmt: skip


@pytest.mark.slow
def test_a_turn_whose_calls_all_fail_continues(smoke, tiny_dir, tmp_path):
    """Error observations carry no image; TRL's tool loop must still continue those rollouts (found on the toy run)."""
    root, queries = smoke
    model, processor = models.load_model(tiny_dir, episode_config=EPISODE, device="cpu", dtype="float32")
    bad = "Looking closer.\n" + protocol.tool_call_text("zoom_in", {"bbox_2d": [0.6, 0.6, 0.2, 0.2]})
    scripted_generate(model, processor.tokenizer, call=bad)
    config = RLConfig(max_steps=1, num_generations=2, per_device_train_batch_size=4)
    trainer = rl.make_trainer(model, processor, queries, data_root=root, output_dir=tmp_path, episode_config=EPISODE,
                              reward_config=RewardConfig(), rl_config=config)  # fmt: skip
    rl.train(trainer)
    (step,) = [e for e in rl.read_step_log(tmp_path / "steps.jsonl") if "pxr/rapr" in e]
    assert step["pxr/op_error_rate"] == 1.0 and step["pxr/rapr"] == 0.0
    episodes = [env.episode for env in trainer.environments]
    assert [e.ending for e in episodes] == ["answer"] * 4  # the failed-call rollouts went on to answer
    assert [e.n_requested for e in episodes] == [1, 0, 1, 0]
