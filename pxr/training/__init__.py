"""Training: SFT (paper §3) and curiosity-driven GRPO (paper §4), their launched jobs and checkpoints."""
