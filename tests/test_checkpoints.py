"""pxr.training.checkpoints.last_checkpoint: a checkpoint cut short by a kill is never the one resumed from."""

import json

from pxr.training.checkpoints import STATE_FILE, last_checkpoint


def checkpoint(folder, step, *, state="whole"):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"\0" * 64)
    if state == "whole":
        (path / STATE_FILE).write_text(json.dumps({"global_step": step}))
    elif state == "torn":
        (path / STATE_FILE).write_text('{"global_step": ')
    return path


def test_a_checkpoint_cut_short_is_moved_aside_and_the_last_whole_one_is_used(tmp_path, capsys):
    """transformers' get_last_checkpoint took the highest number, and every rerun failed on the incomplete one."""
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 10)
    checkpoint(tmp_path, 12, state="torn")  # killed while writing the state file
    checkpoint(tmp_path, 14, state="missing")  # killed while writing the weights
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-10",
        "checkpoint-2",
        "incomplete-checkpoint-12",
        "incomplete-checkpoint-14",
    ]
    assert "checkpoint-14 was cut short" in capsys.readouterr().out
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # stable on the next rerun
    checkpoint(tmp_path, 12, state="missing")  # cut short again at the same step
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert (tmp_path / "incomplete-checkpoint-12-again").is_dir()


def test_no_folder_or_no_whole_checkpoint_means_a_fresh_start(tmp_path):
    assert last_checkpoint(tmp_path / "absent") is None
    checkpoint(tmp_path, 3, state="missing")
    assert last_checkpoint(tmp_path) is None
