"""Run by tests/test_rl_dist.py under `torchrun --nproc_per_node 2`: each process scores its half of a batch whose
groups straddle the two processes, and writes its rewards to <out>/rank<k>.json."""

import json
import sys
from pathlib import Path

from accelerate import PartialState

from pxr.config import RewardConfig
from pxr.training import rl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: make `tests` importable
from tests.rl_fakes import batch  # noqa: E402

state = PartialState(cpu=True)  # joins the gloo process group torchrun describes (as TRL does with use_cpu)
envs, answers = batch()
share = len(envs) // state.num_processes
mine = slice(state.process_index * share, (state.process_index + 1) * share)
fn = rl.make_reward_function(RewardConfig(), group_size=4, end_token_ids=[0])
rewards = fn(
    prompts=[[]] * share,
    completions=[[{"role": "assistant", "content": a}] for a in answers[mine]],
    completion_ids=[[1, 0]] * share,
    environments=envs[mine],
)
Path(sys.argv[1], f"rank{state.process_index}.json").write_text(json.dumps(rewards))
state.wait_for_everyone()
state.destroy_process_group()  # an exit with the group alive can abort in gloo's threads ("terminate called ...")
