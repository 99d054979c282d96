"""Run a stage's training in `accelerate launch` subprocesses (multi-GPU from a notebook): a job file in,
the children's log streamed into the notebook, a result file out.

The notebook process stays light (it must not hold the GPUs the children train on): it writes the job, a plain
JSON dict that names everything the child needs, to `<work_dir>/job.json`, and `launch` runs
`python -m accelerate.commands.launch [--config_file C] [--num_processes N] -m <module> <work_dir>/job.json`.
The child module calls `run_job(fn)`: every process reads the job and calls `fn(job)`; the main process writes
what `fn` returns to `<work_dir>/result.json`, which `launch` returns. Any module works (SFT: `pxr.training.sft_job`; RL
can add its own).

Without a config file, `num_processes` > 1 asks accelerate for its torchrun launcher (`--multi_gpu`). On a machine
without CUDA that gives N CPU processes on gloo, provided the child asks accelerate for the CPU (the Trainer does,
through `use_cpu`); accelerate 1.15's own `--cpu` flag starts a single process unless MPI is set up.

The rendezvous port is a free one only when nothing names one: a config file's `main_process_port` is kept (a
cluster's firewall may open just that port). Several machines run the same launch, each with its own
`machine_rank`, and meet at the rank-0 machine's `main_process_ip:main_process_port`.

Tests: tests/test_launch.py (the command lines built, one and several machines; real CPU launches).
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

JOB_FILE = "job.json"
RESULT_FILE = "result.json"
LOG_FILE = "launch.log"


@dataclass(frozen=True)
class LaunchConfig:
    """Notebooks 20 and 30's launch parameters; `launch(module, job, work_dir, **asdict(config))` takes them as they
    are. Empty or 0 means the accelerate config's value (or one machine, a free port)."""

    accelerate_config: str = ""  # an accelerate config file (configs/accelerate/)
    num_processes: int = 0  # processes to launch
    num_machines: int = 0  # machines of a multi-node launch; each runs the stage with its own machine_rank
    machine_rank: int = 0  # this machine's rank among num_machines
    main_process_ip: str = ""  # address of the machine of rank 0
    main_process_port: int = 0  # rendezvous port

    def settings(self) -> dict:
        """The keyword arguments of `launch`."""
        return asdict(self)


class LaunchFailed(RuntimeError):
    """A launched job exited with an error; the message carries the tail of its log."""


def free_port() -> int:
    """A TCP port nobody listens on now, for the processes' rendezvous (two launches at once must not share one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_file_settings(accelerate_config: str | Path) -> dict:
    """The accelerate config file's settings (YAML, or JSON which YAML reads too); FileNotFoundError if missing."""
    import yaml

    config = Path(accelerate_config)
    if not config.is_file():
        raise FileNotFoundError(f"accelerate config {config} not found (see configs/accelerate/)")
    return yaml.safe_load(config.read_text()) or {}


def accelerate_command(
    module: str,
    job_path: str | Path,
    *,
    accelerate_config: str | Path = "",
    num_processes: int = 0,
    num_machines: int = 0,
    machine_rank: int = 0,
    main_process_ip: str = "",
    main_process_port: int = 0,
) -> list[str]:
    """The `accelerate launch` command line that runs `python -m module job_path` in each process.

    `num_processes` counts the processes of all machines together (accelerate's meaning). Several machines
    (`num_machines` > 1, here or in the config file) run the same command, each with its own `machine_rank`, and
    meet at `main_process_ip:main_process_port` (the machine of rank 0): both must then be set, here or in the file.
    The port is, in this order, `main_process_port`, the config file's, or a free one (one machine only: a port
    picked on each machine would differ). 0 or "" means "not set here": the config file's value, or accelerate's.
    """
    file_settings = config_file_settings(accelerate_config) if accelerate_config else {}
    machines = num_machines or int(file_settings.get("num_machines") or 1)
    port = main_process_port or int(file_settings.get("main_process_port") or 0)
    ip = main_process_ip or str(file_settings.get("main_process_ip") or "")
    if num_machines < 0 or num_processes < 0 or main_process_port < 0:
        raise ValueError("num_machines, num_processes and main_process_port must be >= 0")
    if not 0 <= machine_rank < machines:
        raise ValueError(f"machine_rank must be in [0, {machines}) for {machines} machine(s), got {machine_rank}")
    if machines > 1 and (not port or not ip):
        raise ValueError(
            f"{machines} machines must meet at one address: set main_process_ip and main_process_port (the machine "
            "of rank 0), e.g. pxr run <stem> <run> -p main_process_ip=10.0.0.1 -p main_process_port=29500"
        )
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        command += ["--config_file", str(accelerate_config)]
    else:
        if num_processes > 1 or machines > 1:
            command += ["--multi_gpu"]
        command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_machines or not accelerate_config:
        command += ["--num_machines", str(machines)]
    if num_processes:
        command += ["--num_processes", str(num_processes)]
    if machines > 1:
        command += ["--machine_rank", str(machine_rank), "--main_process_ip", ip]
    elif main_process_ip:
        command += ["--main_process_ip", main_process_ip]
    if main_process_port or not file_settings.get("main_process_port"):
        command += ["--main_process_port", str(port or free_port())]
    command += ["-m", module, str(job_path)]
    return command


def launch(
    module: str,
    job: dict,
    work_dir: str | Path,
    *,
    accelerate_config: str | Path = "",
    num_processes: int = 0,
    num_machines: int = 0,
    machine_rank: int = 0,
    main_process_ip: str = "",
    main_process_port: int = 0,
    env: dict[str, str] | None = None,
    echo: Callable[[str], None] | None = print,
    tail_lines: int = 40,
) -> dict:
    """Write `job` to `work_dir/job.json`, run `module` on it under `accelerate launch`, stream its output through
    `echo` (and into `work_dir/launch.log`), and return the dict the main process wrote to `work_dir/result.json`.

    `num_machines`, `machine_rank`, `main_process_ip`, `main_process_port`: see `accelerate_command`; on several
    machines, call this on each with its own `machine_rank`. Raises LaunchFailed, with the last `tail_lines` lines of the log, when the launch exits non-zero or leaves no
    result. `env` adds to this process's environment (the children inherit it, PYTHONPATH included).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    job_path, result_path, log_path = work_dir / JOB_FILE, work_dir / RESULT_FILE, work_dir / LOG_FILE
    job_path.write_text(json.dumps(job, indent=2, default=str) + "\n")
    result_path.unlink(missing_ok=True)  # a stale result must not pass for this launch's
    command = accelerate_command(
        module, job_path, accelerate_config=accelerate_config, num_processes=num_processes, num_machines=num_machines,
        machine_rank=machine_rank, main_process_ip=main_process_ip, main_process_port=main_process_port,
    )  # fmt: skip
    child_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    # Kept longer than shown: the launcher's own traceback comes last and would hide the child's error.
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines * 10)
    with open(log_path, "w") as log:
        log.write(" ".join(command) + "\n")
        # A session of its own, so that an interrupted notebook can stop the launcher and every process it started.
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env, bufsize=1,
            start_new_session=True,
        )  # fmt: skip
        try:
            for line in process.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                if echo is not None:
                    echo(line.rstrip("\n"))
        except BaseException:  # KeyboardInterrupt included: trainers left running would hold the accelerators
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()
            raise
        returncode = process.wait()
    if returncode != 0 or not result_path.exists():
        why = f"exited with status {returncode}" if returncode != 0 else f"wrote no {RESULT_FILE}"
        raise LaunchFailed(
            f"launched job {module} {why}; full log: {log_path}\n" + failure_excerpt(list(tail), tail_lines)
        )
    return json.loads(result_path.read_text())


def failure_excerpt(lines: list[str], n: int = 40) -> str:
    """What a reader of a failed launch needs: the last `n` lines the processes printed before torchrun's own
    traceback (a `ChildFailedError` that says only which rank died, by which signal) plus torchrun's root-cause
    summary. Without that traceback in the log, the last `n` lines."""
    failed = [i for i, line in enumerate(lines) if "ChildFailedError" in line]
    if not failed:
        return "--- last lines ---\n" + "\n".join(lines[-n:])
    start = next((i for i in range(failed[0], -1, -1) if lines[i].startswith("Traceback")), failed[0])
    root = next((i for i in range(failed[0], len(lines)) if "Root Cause" in lines[i]), len(lines))
    return (
        "--- the processes' last lines ---\n" + "\n".join(lines[max(0, start - n) : start])
        + "\n--- torchrun ---\n" + "\n".join(lines[root:])
    )  # fmt: skip


# --------------------------------------------------------------------------------------------- the child side


def is_main_process() -> bool:
    """Rank 0 of the launch (or not launched at all)."""
    return int(os.environ.get("RANK", "0")) == 0


def run_job(fn: Callable[[dict], dict], argv: list[str] | None = None) -> dict:
    """The child's main: read the job file named on the command line, run `fn(job)` in every process, write its
    result next to the job file from the main process only."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit(f"usage: python -m <module> <job.json>; got {argv}")
    job_path = Path(argv[0])
    result = fn(json.loads(job_path.read_text()))
    if is_main_process():
        (job_path.parent / RESULT_FILE).write_text(json.dumps(result, indent=2, default=str) + "\n")
    leave_process_group()
    return result


def leave_process_group() -> None:
    """Wait for every process, then close the process group. A process that exits with the group alive while
    another is still saving can die in gloo's threads ("terminate called ...", SIGABRT) and fail the launch after
    the work is done; trainers do not close the group themselves."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
