"""Evaluation runs (paper §5): a benchmark's items rolled out by a backend under a prompt variant and a control,
each trajectory scored, the figures of `pxr.metrics.eval_metrics` computed, and the protocol recorded with them.

Controls (`control`): `none`; `text` (the text prompt, no ops: what the model answers from the input alone);
`blank` (ops execute but return blank images of the same size: whether the model uses the pixels it asked for).
Backends: `local` (the in-process model, batched, `pxr.rollout.generate_trajectories`), `openai` (any
OpenAI-compatible endpoint, `pxr.evaluation.openai_backend`) and `vllm` (offline vLLM on this machine's GPUs, every episode
batched, data parallel over engines: `pxr.evaluation.vllm_backend`). A trajectory is scored on its final turn when the model ended
it by answering (`pxr.reward.SCORED_ENDINGS`: a short bare reply is an answer, as in the reward); truncated
episodes and episodes stopped by a limit score 0.

Tests: tests/test_evaluate.py (a scripted model through the whole path: exact accuracy, RaPR and IoU).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from pxr import metrics, reward
from pxr.config import EpisodeConfig
from pxr.evaluation.benchmarks import Benchmark, get_benchmark
from pxr.records import EVAL_RECORDS
from pxr.rollout import Query, RolloutConfig, Trajectory, generate_trajectories, start_trajectory
from pxr.synthesis.importers import ImportReport

CONTROLS = ("none", "text", "blank")
BACKENDS = ("local", "openai", "vllm")
RECORDS = EVAL_RECORDS


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; built from notebook 40's parameters. Pixel budgets and op limits are the
    `EpisodeConfig`'s, decoding the `RolloutConfig`'s."""

    benchmark: str = "synthetic-zoom"
    data_path: str = ""  # the benchmark file, or a notebook-10 run for the synthetic suites
    data_root: str = ""  # the folder image paths are relative to; empty: the file's folder
    max_items: int = 0  # 0: all
    n_per_kind: int = 4  # synthetic items generated per kind when no data_path is given
    suite_seed: int = 2  # synthetic suite seed (held out: notebook 10 trains on seeds 0 and 1)
    control: str = "none"  # none | text | blank
    backend: str = "local"  # local | openai | vllm
    model_path: str = ""  # local and vllm: a checkpoint folder or hub id
    api_model: str = ""  # openai: the endpoint's model name
    base_url: str = ""  # openai: the endpoint (empty: the OpenAI API)
    concurrency: int = 16  # openai: episodes in flight
    question_prompt: str = "released"  # released (question verbatim) | instructed (pxr's short-answer instruction)
    vllm_tensor_parallel_size: int = 1  # vllm: GPUs per engine
    vllm_data_parallel_size: int = 1  # vllm: engines, each with its own GPUs and share of the items
    vllm_gpu_memory_utilization: float = 0.9  # vllm: share of each GPU's memory the engine may take
    vllm_max_model_len: int = 0  # vllm: longest prompt plus turn; 0 means the model's own

    def __post_init__(self):
        get_benchmark(self.benchmark)
        if self.control not in CONTROLS:
            raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {self.control!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "openai" and not self.api_model:
            raise ValueError("the openai backend needs api_model (the endpoint's model name)")
        if self.backend == "vllm":
            self.vllm_backend()  # its own checks, model_path included
        get_benchmark(self.benchmark).prompt_for("", self.question_prompt)  # a clear error for an unknown choice
        if self.max_items < 0 or self.n_per_kind < 0:
            raise ValueError("max_items and n_per_kind must be >= 0")

    def vllm_backend(self):
        """The vllm backend's settings (`pxr.evaluation.vllm_backend.VLLMBackendConfig`), checked."""
        from pxr.evaluation.vllm_backend import VLLMBackendConfig

        return VLLMBackendConfig(
            model=self.model_path,
            tensor_parallel_size=self.vllm_tensor_parallel_size,
            data_parallel_size=self.vllm_data_parallel_size,
            gpu_memory_utilization=self.vllm_gpu_memory_utilization,
            max_model_len=self.vllm_max_model_len,
        )


def controlled(episode_config: EpisodeConfig, control: str) -> EpisodeConfig:
    """The episode settings of a control: `text` switches the prompt to the text variant, `blank` blanks what ops
    return; `none` leaves them as they are."""
    if control == "text":
        return replace(episode_config, prompt="text")
    if control == "blank":
        return replace(episode_config, blank_observations=True)
    if control != "none":
        raise ValueError(f"control must be one of {', '.join(CONTROLS)}, got {control!r}")
    return episode_config


def protocol_record(
    config: EvalConfig, episode_config: EpisodeConfig, rollout_config: RolloutConfig, *, n_items: int
) -> dict:
    """The protocol as flat fields: benchmark and version, model and backend, prompt and control, decoding, limits and
    pixel budgets (the episode settings as they ran, control applied)."""
    bench = get_benchmark(config.benchmark)
    effective = controlled(episode_config, config.control)
    model = config.api_model if config.backend == "openai" else config.model_path
    engine = {k: v for k, v in asdict(config).items() if k.startswith("vllm_")} if config.backend == "vllm" else {}
    return {
        "benchmark": bench.name,
        "benchmark_version": bench.version,
        "answer_kind": bench.answer_kind,
        "metric": bench.metric,
        "items_evaluated": n_items,
        "data_path": config.data_path,
        "backend": config.backend,
        "model": model or "(built here)",
        "base_url": config.base_url if config.backend == "openai" else "",
        "control": config.control,
        "question_prompt": config.question_prompt,
        **engine,
        **asdict(effective),
        "decoding": "greedy" if rollout_config.temperature == 0 else "sampling",
        **{k: v for k, v in asdict(rollout_config).items() if k != "batch_size"},
    }


def score_trajectory(trajectory: Trajectory, benchmark: Benchmark) -> float:
    """The benchmark's score of a trajectory's final turn; 0 when the episode did not end by answering."""
    if (
        trajectory.episode.ending not in reward.SCORED_ENDINGS
        or not trajectory.turns
        or trajectory.query.answer is None
    ):
        return 0.0
    query = trajectory.query
    options = query.options or query.meta.get("options_for_scoring")
    return benchmark.score(trajectory.turns[-1].text, query.answer, options)


def item_record(trajectory: Trajectory, score: float) -> dict:
    """The trajectory's record with its score and the input paths (when the query named files)."""
    record = trajectory.record()
    query = trajectory.query
    media = query.images if query.images is not None else query.video
    media = media if isinstance(media, (list, tuple)) else [media]
    inputs = [str(m) for m in media if isinstance(m, (str, Path))]
    return {**record, "score": score, "inputs": inputs if len(inputs) == len(media) else None}


def startable(queries: list[Query], episode_config: EpisodeConfig) -> tuple[list[Query], dict[str, str]]:
    """The queries whose episode can start, and {id: why} for the others. Only video files are tried here (the
    loaders already decoded every image); a video that no installed decoder reads is one failed item, not a crash."""
    kept, failed = [], {}
    for query in queries:
        if query.video is not None and not isinstance(query.video, (list, tuple)):
            try:
                start_trajectory(query, episode_config)
            except Exception as err:  # decord/PyAV missing, or a damaged file
                failed[query.id] = f"{type(err).__name__}: {str(err)[:200]}"
                continue
        kept.append(query)
    return kept, failed


def skipped_rows(report: ImportReport | None) -> dict[str, int]:
    """Rows of the benchmark file read and skipped, in all and per reason (`rows_skipped_missing_file`, ...)."""
    if report is None:
        return {}
    by_reason = {f"rows_skipped_{reason.replace(' ', '_')}": n for reason, n in sorted(report.skipped.items())}
    return {"rows_read": report.read, "rows_skipped": report.n_skipped, **by_reason}


def resolve_video_input(episode_config: EpisodeConfig, processor) -> str:
    """`video_input` as it will run: "auto" is one video item under `pixel-reasoner-v1` when `processor` (the
    local backend's; None for an endpoint, whose chat API pxr sends images to) has a video processor (torchvision
    installed), else numbered frames."""
    if episode_config.video_input != "auto":
        if episode_config.video_input == "video" and processor is None:
            raise ValueError("video_input 'video' needs the local backend's processor; use auto or frames")
        return episode_config.video_input
    reads_videos = getattr(processor, "video_processor", None) is not None
    return "video" if episode_config.prompt == "pixel-reasoner-v1" and reads_videos else "frames"


@dataclass
class EvalResult:
    trajectories: list[Trajectory]
    records: list[dict]
    metrics: dict  # eval_metrics first, then the protocol
    breakdown: list[dict]  # per kind
    unstartable: dict[str, str]  # id -> why its episode could not start (an unreadable video file)


def evaluate(
    queries: list[Query],
    config: EvalConfig,
    *,
    episode_config: EpisodeConfig | None = None,
    rollout_config: RolloutConfig | None = None,
    model=None,
    processor=None,
    progress: bool = True,
    report: ImportReport | None = None,
) -> EvalResult:
    """Roll out, score and measure `queries` as `config` says (the local backend needs `model` and `processor`; the
    vllm backend renders with `processor` when given, else loads the model's).
    `report` (the loader's) puts the rows that were skipped, by reason, into the figures."""
    bench = get_benchmark(config.benchmark)
    episode_config = episode_config or EpisodeConfig()
    rollout_config = rollout_config or RolloutConfig()
    # "auto" settings recorded as they ran: a video as one video item under the released prompt where the processor
    # reads videos; the model family whose boxes the episodes read.
    local = processor if config.backend == "local" else None
    video_input = resolve_video_input(episode_config, local)
    episode_config = replace(episode_config, video_input=video_input, model_family=episode_config.family)
    running = controlled(episode_config, config.control)
    queries, unstartable = startable(queries, running)
    if config.backend == "local":
        if model is None or processor is None:
            raise ValueError("the local backend needs the model and its processor (pxr.models.load_model)")
        trajectories = generate_trajectories(
            model, processor, queries, episode_config=running, rollout_config=rollout_config, progress=progress
        )
    elif config.backend == "vllm":
        from pxr.evaluation.vllm_backend import generate_trajectories_vllm

        trajectories = generate_trajectories_vllm(
            queries, backend=config.vllm_backend(), episode_config=running, rollout_config=rollout_config,
            processor=processor, progress=progress,
        )  # fmt: skip
    else:
        from pxr.evaluation.openai_backend import OpenAIBackendConfig, generate_trajectories_openai

        backend = OpenAIBackendConfig(
            model=config.api_model, base_url=config.base_url or None, concurrency=config.concurrency
        )
        trajectories = generate_trajectories_openai(
            queries, backend=backend, episode_config=running, rollout_config=rollout_config, progress=progress
        )
    records = [item_record(t, score_trajectory(t, bench)) for t in trajectories]
    figures = metrics.eval_metrics(records, bench.metric)
    # what answering without looking scores on these very items, beside the model's figures
    figures |= {f"baseline_{k}": v for k, v in metrics.answer_baselines(records).items()}
    figures["items_unstartable"] = len(unstartable)
    figures |= skipped_rows(report)
    figures |= protocol_record(config, episode_config, rollout_config, n_items=len(records))
    return EvalResult(trajectories, records, figures, metrics.breakdown_rows(records, bench.metric), unstartable)


def write_results(out_dir, result: EvalResult) -> Path:
    """`records.jsonl` (one scored record per item) in `out_dir`, and the figures into its `metrics.json`."""
    from pxr.records import write_metrics

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / RECORDS).open("w") as f:
        for record in result.records:
            f.write(json.dumps(record, default=str) + "\n")
    return write_metrics(out, result.metrics)


# The figures of the headline table, in order ("score": the benchmark's metric, accuracy or anls).
HEADLINE = ("items", "score", "rapr", "mean_ops", "op_error_rate", "zoom_iou", "zoom_cue_coverage", "frame_recall")
GROUP_FIGURES = ("items", "score", "rapr", "mean_ops", "op_error_rate")  # per group: zoom-needed vs coarse


def summary_tables(result: EvalResult, config: EvalConfig) -> list[tuple[str, list[dict]]]:
    """The results as (title, rows) tables, for a notebook: the headline figures with the model, prompt and control;
    zoom-needed vs coarse items (where the benchmark has those groups); the breakdown per kind; the ending reasons."""
    m, score = result.metrics, get_benchmark(config.benchmark).metric
    headline, per_group = ([score if k == "score" else k for k in names] for names in (HEADLINE, GROUP_FIGURES))
    tables = [("", [{"model": m["model"], "prompt": m["prompt"], "control": config.control,
                     **{k: m.get(k) for k in headline}}])]  # fmt: skip
    groups = [
        {
            "group": g,
            **{k: m.get(f"{k}_{g}") for k in per_group},
            "majority answer": m.get(f"baseline_majority_{g}"),
            "chance": m.get(f"baseline_chance_{g}"),
        }
        for g in ("zoom_needed", "coarse")
        if f"items_{g}" in m
    ]
    if groups:
        tables.append(("**Zoom-needed vs coarse**\n\n", groups))
    tables.append(("**Per kind**\n\n", result.breakdown))
    tables.append(("", [{k: v for k, v in m.items() if k.startswith("ending_")}]))
    return tables


def gallery(result: EvalResult, n: int = 4) -> list[tuple[Trajectory, float]]:
    """Up to `n` trajectories, right and wrong alternating, pixel-space ones first within each."""
    scored = list(zip(result.trajectories, (r["score"] for r in result.records), strict=True))

    def pick(right: bool):
        chosen = [(t, s) for t, s in scored if (s >= 0.5) == right]
        return sorted(chosen, key=lambda ts: ts[0].episode.n_executed == 0)

    right, wrong = pick(True), pick(False)
    mixed = [x for pair in zip(right, wrong, strict=False) for x in pair]
    rest = right[len(mixed) // 2 :] + wrong[len(mixed) // 2 :]
    return (mixed + rest)[:n]
