"""pxr: Pixel Reasoner (arXiv 2505.15966) as a small tested library under ordered notebooks.

The method's core, flat:
    ops            the visual operations (zoom_in, select_frames) and their budgets (paper §2)
    episode        VisualEpisode: one episode's images, op execution, limits and record; every phase runs ops here
    protocol       prompts, tool schemas, call parsing, answers; families: the model families' box conventions
    reward         correctness, RaPR, the curiosity bonus and the op penalty (paper §4)
    scoring        answer scorers (exact, choice letters, ANLS)
    config         EpisodeConfig, RewardConfig, RLConfig: every behaviour-changing constant as a parameter
    data           trajectory and query records, JSONL I/O that counts bad rows
    models         VLM loading, the tiny offline model
    rollout        batched multi-turn generation with ops (rollout_batch: KV-cache reuse across turns)
    metrics        one metric vocabulary for SFT, RL and evaluation; records: run-file names, notebook helpers
    video, viz     frame sampling; trajectory pictures and curves

The stage machinery, in subpackages named for their role:
    scenes         synthetic suites: tile grids, named-object images, videos (draw, grid, images, videos)
    synthesis      teachers, trajectories with self-correction (paper §3), the resumable run, importers,
                   the toy line's perception-base items
    training       SFT and GRPO (sft, rl, rl_env), launched jobs, vLLM settings, memory sizing, checkpoints,
                   accelerate launch, the training notebooks' logs (train_log)
    evaluation     benchmarks, evaluation runs and their OpenAI and vLLM backends, ablation tables, the demo
    runner         params, papermill runs and their records, grids, the `pxr` command
"""

__version__ = "0.1.0"
