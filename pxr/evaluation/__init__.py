"""Evaluation: benchmarks, evaluation runs and backends, ablation tables, the demo stepper."""
