"""pxr.training.launch and pxr.training.sft_job: the command line, a failing child's log tail, and a real two-process CPU launch
(gloo) that trains the tiny model for 2 steps and saves it."""

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pxr import data, models
from pxr.config import EpisodeConfig
from pxr.synthesis import synth, synth_run
from pxr.synthesis.teacher import TemplateTeacher
from pxr.training import launch, sft_job

EPISODE = EpisodeConfig()
REPO = Path(__file__).resolve().parents[1]
needs_accelerate_cli = pytest.mark.skipif(
    importlib.util.find_spec("accelerate.commands.launch") is None, reason="accelerate's launcher is not installed"
)


def child_env(*paths) -> dict:
    # Children inherit PYTHONPATH: our code first, as in the parent; one thread each on these shared cores.
    return {"PYTHONPATH": os.pathsep.join([str(REPO), *map(str, paths)]), "OMP_NUM_THREADS": "1"}


def test_command_line_names_module_job_and_processes(tmp_path):
    command = launch.accelerate_command("pxr.training.sft_job", tmp_path / "job.json", num_processes=2)
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[-3:] == ["-m", "pxr.training.sft_job", str(tmp_path / "job.json")]
    assert "--multi_gpu" in command and command[command.index("--num_processes") + 1] == "2"
    config = REPO / "configs/accelerate/ddp_8gpu.yaml"
    with_config = launch.accelerate_command("m", "j.json", accelerate_config=config)
    assert with_config[with_config.index("--config_file") + 1] == str(config) and "--multi_gpu" not in with_config
    with pytest.raises(FileNotFoundError, match="configs/accelerate"):
        launch.accelerate_command("m", "j.json", accelerate_config=tmp_path / "missing.yaml")


def flag(command, name):
    return command[command.index(name) + 1] if name in command else None


def test_a_config_files_port_is_kept_and_an_explicit_port_wins(tmp_path):
    config = tmp_path / "fixed_port.yaml"
    config.write_text((REPO / "configs/accelerate/ddp_8gpu.yaml").read_text() + "main_process_port: 29617\n")
    kept = launch.accelerate_command("m", "j.json", accelerate_config=config)
    assert "--main_process_port" not in kept  # accelerate reads it from the file: the CLI would override it
    assert flag(launch.accelerate_command("m", "j.json", accelerate_config=config, main_process_port=29700),
                "--main_process_port") == "29700"  # fmt: skip
    without = launch.accelerate_command("m", "j.json", accelerate_config=REPO / "configs/accelerate/ddp_8gpu.yaml")
    assert int(flag(without, "--main_process_port")) > 0  # no port in the file: a free one, as before


def test_several_machines_get_rank_address_and_port(tmp_path):
    common = {"num_processes": 16, "num_machines": 2, "main_process_ip": "10.0.0.1", "main_process_port": 29500}
    ranks = [launch.accelerate_command("pxr.training.sft_job", "j.json", machine_rank=r, **common) for r in (0, 1)]
    for rank, command in enumerate(ranks):
        assert "--multi_gpu" in command and flag(command, "--num_machines") == "2"
        assert flag(command, "--num_processes") == "16" and flag(command, "--machine_rank") == str(rank)
        assert flag(command, "--main_process_ip") == "10.0.0.1" and flag(command, "--main_process_port") == "29500"
        assert command[-3:] == ["-m", "pxr.training.sft_job", "j.json"]
    assert [c for c in ranks[0] if c != "0"] == [c for c in ranks[1] if c != "1"]  # only the rank differs
    config = tmp_path / "two_nodes.yaml"
    config.write_text(
        "distributed_type: MULTI_GPU\nnum_machines: 2\nmain_process_ip: 10.0.0.2\nmain_process_port: 29400\n"
    )
    from_file = launch.accelerate_command("m", "j.json", accelerate_config=config, machine_rank=1)
    assert flag(from_file, "--machine_rank") == "1" and flag(from_file, "--main_process_ip") == "10.0.0.2"
    assert "--main_process_port" not in from_file and "--num_machines" not in from_file  # the file's own


def test_several_machines_without_an_address_or_with_a_bad_rank_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="main_process_ip and main_process_port"):
        launch.accelerate_command("m", "j.json", num_machines=2, main_process_ip="10.0.0.1")
    with pytest.raises(ValueError, match="main_process_ip and main_process_port"):
        launch.accelerate_command("m", "j.json", num_machines=2, main_process_port=29500)
    with pytest.raises(ValueError, match="machine_rank must be in"):
        launch.accelerate_command(
            "m", "j.json", num_machines=2, machine_rank=2, main_process_ip="h", main_process_port=1
        )
    with pytest.raises(ValueError, match="machine_rank must be in"):
        launch.accelerate_command("m", "j.json", machine_rank=1)


def test_launch_passes_the_machine_settings_to_the_command(tmp_path, monkeypatch):
    seen = {}

    def fake_popen(command, **kwargs):
        seen["command"] = command
        raise RuntimeError("stop before starting anything")

    monkeypatch.setattr(launch.subprocess, "Popen", fake_popen)
    with pytest.raises(RuntimeError, match="stop before"):
        sft_job.launch_sft({"checkpoint_dir": str(tmp_path / "run" / "checkpoints")}, num_processes=16, num_machines=2,
                           machine_rank=1, main_process_ip="10.0.0.1", main_process_port=29500, echo=None)  # fmt: skip
    assert flag(seen["command"], "--machine_rank") == "1" and flag(seen["command"], "--main_process_port") == "29500"


@pytest.mark.parametrize("name", ["ddp_8gpu", "deepspeed_zero3_8gpu", "single_gpu"])
def test_committed_accelerate_configs_are_complete(name):
    import yaml

    config = yaml.safe_load((REPO / f"configs/accelerate/{name}.yaml").read_text())
    assert config["num_processes"] == (1 if name == "single_gpu" else 8) and config["num_machines"] == 1
    if name.startswith("deepspeed"):
        deepspeed = json.loads((REPO / config["deepspeed_config"]["deepspeed_config_file"]).read_text())
        assert deepspeed["zero_optimization"]["stage"] == 3 and deepspeed["bf16"]["enabled"] == "auto"


@pytest.mark.slow
@needs_accelerate_cli
def test_a_failing_job_raises_with_the_tail_of_its_log(tmp_path):
    (tmp_path / "broken_job.py").write_text(
        "from pxr.training import launch\n"
        "def run(job):\n"
        "    print('reading', job['what'], flush=True)\n"
        "    raise ValueError('no such thing: ' + job['what'])\n"
        "launch.run_job(run)\n"
    )
    seen = []
    with pytest.raises(launch.LaunchFailed, match="exited with status") as failure:
        launch.launch("broken_job", {"what": "gizmo"}, tmp_path / "work", env=child_env(tmp_path), echo=seen.append)
    assert "ValueError: no such thing: gizmo" in str(failure.value)
    assert "reading gizmo" in seen  # streamed while it ran
    assert "no such thing: gizmo" in (tmp_path / "work" / launch.LOG_FILE).read_text()
    assert json.loads((tmp_path / "work" / launch.JOB_FILE).read_text()) == {"what": "gizmo"}


@pytest.mark.slow
@needs_accelerate_cli
def test_two_cpu_processes_train_the_tiny_model_and_save_it(tmp_path):
    model_dir = models.build_tiny_model(tmp_path / "tiny")
    synth_dir = tmp_path / "synth"
    items = synth_run.write_seed_items("read", 4, 0, synth_dir, split="train")
    synth_run.synthesize(
        items, synth_dir, TemplateTeacher(seed=0), synth_config=synth.SynthConfig(seed=0), episode_config=EPISODE,
        progress=False,
    )  # fmt: skip
    assert len(data.read_jsonl(synth_dir / synth_run.TRAJECTORIES, data.TrajectoryRecord)[0]) == 4
    job = sft_job.sft_job(
        model_dir, synth_dir, tmp_path / "run", EPISODE,
        learning_rate=1e-3, max_steps=2, per_device_train_batch_size=1, warmup_ratio=0.0, save_steps=100,
        save_model_at_epochs=[1],
    )  # fmt: skip
    lines = []
    result = sft_job.launch_sft(job, num_processes=2, env=child_env(), echo=lines.append)
    assert result["world_size"] == 2 and result["global_step"] == 2
    # 4 trajectories over 2 processes at batch 1: step 2 ends epoch 1, whose model both processes saved together
    assert result["epoch_models"] == {"1": str(tmp_path / "run" / "model_epoch1")}
    assert (tmp_path / "run" / "model_epoch1" / "model.safetensors").exists()
    assert any("2 processes" in line for line in lines)
    assert Path(result["last_checkpoint"]).name == "checkpoint-2"
    assert [step for step, _ in result["losses"]] == [1, 2]
    saved = Path(result["model_dir"])
    assert (saved / "config.json").exists() and (saved / "tokenizer.json").exists()
    before, after = load_file(model_dir / "model.safetensors"), load_file(saved / "model.safetensors")
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("visual" not in k for k in changed)  # vision frozen by default


@pytest.mark.slow
@needs_accelerate_cli
def test_an_interrupted_launch_stops_its_processes(tmp_path):
    (tmp_path / "slow_job.py").write_text(
        "import os, time\n"
        "from pxr.training import launch\n"
        "def run(job):\n"
        "    print('pid', os.getpid(), flush=True)\n"
        "    time.sleep(120)\n"
        "    return {}\n"
        "launch.run_job(run)\n"
    )
    pids = []

    def echo(line):
        if line.startswith("pid "):
            pids.append(int(line.split()[1]))
            raise KeyboardInterrupt  # what a notebook's interrupt button raises while the log streams

    with pytest.raises(KeyboardInterrupt):
        launch.launch("slow_job", {}, tmp_path / "work", env=child_env(tmp_path), echo=echo)
    assert pids
    for _ in range(50):  # SIGTERM reaches the job process through its launcher's process group
        try:
            os.kill(pids[0], 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"job process {pids[0]} still running")


def test_a_failure_excerpt_shows_the_dead_rank_s_error_not_the_launcher_s_traceback():
    child = [f"step {i}" for i in range(50)] + ["terminate called after throwing an instance of 'gloo::IoException'"]
    launcher = ["Traceback (most recent call last):"] + [f'  File "launch.py", line {i}' for i in range(60)]
    launcher += ["torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ", "=====", "Root Cause (first observed failure):",
                 "[0]:", "  rank      : 1 (local_rank: 1)", "  exitcode  : -6 (pid: 4048)"]  # fmt: skip
    excerpt = launch.failure_excerpt(child + launcher, n=10)
    assert "gloo::IoException" in excerpt and "exitcode  : -6" in excerpt
    assert "step 41" in excerpt and "step 40" not in excerpt  # the last 10 lines before the traceback
    assert 'File "launch.py"' not in excerpt
    assert launch.failure_excerpt(child, n=3).splitlines()[1:] == child[-3:]  # no launcher traceback: the tail
