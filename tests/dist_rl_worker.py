"""Run by tests/test_rl_dist.py under `torchrun --nproc_per_node 2`: GRPO steps on the tiny model where the two
processes' rollouts take different numbers of tool turns (rank 0 zooms twice before answering, rank 1 answers at
once), so their generation rounds differ; each process writes <out>/rank<k>.json with its global step."""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `tests` importable
from pxr import data, models, protocol  # noqa: E402
from pxr.config import EpisodeConfig, RewardConfig, RLConfig  # noqa: E402
from pxr.synthesis import synth_run
from pxr.training import rl

EPISODE = EpisodeConfig(image_max_pixels=64 * 784, crop_max_pixels=64 * 784)
ZOOM = "Closer.\n" + protocol.tool_call_text("zoom_in", {"bbox_2d": [0.2, 0.2, 0.6, 0.6]})

out = Path(sys.argv[1])
state = PartialState(cpu=True)
rank = state.process_index
queries, _ = data.read_jsonl(out / "data" / synth_run.RL_QUERIES, data.RLQuery)
model, processor = models.load_model(out / "tiny", episode_config=EPISODE, device="cpu", dtype="float32")
tokenizer, real_generate = processor.tokenizer, model.generate


def generate(input_ids=None, attention_mask=None, **kwargs):
    real_generate(input_ids=input_ids, attention_mask=attention_mask, **{**kwargs, "max_new_tokens": 1})
    rows = []
    for i, ids in enumerate(input_ids):
        seen = tokenizer.decode(ids[attention_mask[i].bool()]).count("<tool_response>")
        turn = ZOOM if rank == 0 and seen < 2 else "It is \\boxed{3}."
        rows.append(tokenizer(turn + ("" if turn == ZOOM else "<|im_end|>"))["input_ids"])
    width = max(map(len, rows))
    new = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    return torch.cat([input_ids, new], dim=1)


model.generate = generate
config = RLConfig(max_steps=2, num_generations=2, per_device_train_batch_size=2, save_steps=100)
trainer = rl.make_trainer(model, processor, queries, data_root=out / "data", output_dir=out / "run",
                          episode_config=EPISODE, reward_config=RewardConfig(), rl_config=config)  # fmt: skip
trainer.args.disable_tqdm = True
rl.train(trainer)
turns = [len(env.stepped) for env in trainer.environments]
(out / f"rank{rank}.json").write_text(json.dumps({"global_step": trainer.state.global_step, "routed_turns": turns}))
state.wait_for_everyone()
state.destroy_process_group()
