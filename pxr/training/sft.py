"""Supervised fine-tuning on synthesized trajectories (paper §3): examples replayed through the episode, a loss
mask of our own, a padding collator, and a `transformers.Trainer` that freezes the vision tower and resumes.

`replay_images` re-runs each recorded trajectory through `VisualEpisode`, so the pixels SFT trains on are the
pixels RL rollouts and evaluation show (the stored observation JPEGs are only for people to look at).
`ReplayedExamples` replays them when the Trainer reads an example, so each process of a launched run holds the
images of the batch it is on, not those of the whole data set (benchmarks/sft_host_memory.py measures it). The loss
covers the tokens of trainable assistant turns only: never observations, system or user text, and never the
assistant turns that call a wrong op (the paper's rule, not the released code's "last two turns").

`save_model` writes a trained model as a self-contained folder `pxr.models.load_model` reads (LoRA merged into the
weights); `save_model_at_epochs` in `make_trainer` also writes one at the end of chosen epochs, `<run>/model_epoch<N>`
beside the final `<run>/model`: the released recipe starts RL from the warm-start model after about one epoch
(checkpoint-246 of a 5-epoch run; the paper does not say), not from the end of SFT.

Tests: tests/test_sft.py (masks on a self-correction trajectory, replay, lazy replay equal to the eager one, a few
training steps, resume, a finished run re-run, LoRA resume); tests/test_sft_epochs.py (epoch models: loadable,
distinct from the final one, kept across resume, LoRA merged); tests/test_launch.py for the launched path
(pxr.training.sft_job); tests/test_trackers.py (report_to and run_name reach the Trainer; TensorBoard events of SFT steps).
"""

from __future__ import annotations

import copy
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from PIL import Image
from transformers import TrainerCallback

from pxr import data, protocol
from pxr.config import EpisodeConfig
from pxr.episode import VisualEpisode

IGNORE_INDEX = -100
ASSISTANT_HEADER = "<|im_start|>assistant\n"
END_OF_TURN = "<|im_end|>"


# ------------------------------------------------------------------------------------------------- examples


def _replay(record: data.TrajectoryRecord, root, episode_config: EpisodeConfig) -> VisualEpisode:
    """The record's episode run again from its inputs; every observation must match the recorded one."""
    if not record.inputs:
        raise ValueError(f"trajectory {record.id}: it has no inputs")
    paths = [data.resolve_under(root, rel) for rel in record.inputs]
    # The turns were written for the record's prompt variant; its observation lines depend on it.
    config = replace(episode_config, prompt=record.prompt)
    if record.is_video and len(paths) == 1 and paths[0].suffix.lower() in data.VIDEO_SUFFIXES:
        episode = VisualEpisode(video=paths[0], options=record.options, config=config)
    else:
        loaded = []
        for path in paths:
            with Image.open(path) as image:
                loaded.append(image.convert("RGB"))
        inputs = {"video" if record.is_video else "images": loaded}
        episode = VisualEpisode(**inputs, options=record.options, config=config)
    replayed = 0
    for index, turn in enumerate(record.turns):
        observation = episode.step(turn.text) if turn.role == "assistant" else None
        if observation is None:
            continue
        replayed += 1
        recorded = record.turns[index + 1] if index + 1 < len(record.turns) else None
        if recorded is None or recorded.role != "observation":
            raise ValueError(f"trajectory {record.id}: turn {index + 1} calls an op but no observation is recorded")
        if recorded.text != observation.text or len(recorded.images) != len(observation.images):
            raise ValueError(
                f"trajectory {record.id}: observation at turn {index + 2} does not match the replay: recorded "
                f"{recorded.text!r} with {len(recorded.images)} images, replayed {observation.text!r} with "
                f"{len(observation.images)} images (other pixel budgets or prompt variant?)"
            )
    if replayed != sum(t.role == "observation" for t in record.turns):
        raise ValueError(f"trajectory {record.id}: it records observations that its assistant turns do not produce")
    return episode


def replay_images(record: data.TrajectoryRecord, root, episode_config: EpisodeConfig) -> list[Image.Image]:
    """The trajectory's images as the model sees them in RL and evaluation: inputs then op outputs, in number
    order, at their budgets. Raises ValueError (naming the record) if a recorded observation differs."""
    return _replay(record, root, episode_config).shown_images


def sft_example(record: data.TrajectoryRecord, root, episode_config: EpisodeConfig) -> dict:
    """`messages` (the one chat rendering of an episode), `images` (replayed) and `trainable` (per assistant turn)."""
    episode = _replay(record, root, episode_config)
    turns = [(t.role, t.text, len(t.images)) for t in record.turns]
    messages = protocol.build_messages(
        record.question,
        episode.n_inputs,
        turns,
        is_video=record.is_video,
        options=record.options,
        variant=record.prompt,
        family=episode.config.family,
    )
    trainable = [t.trainable for t in record.turns if t.role == "assistant"]
    return {"id": record.id, "messages": messages, "images": episode.shown_images, "trainable": trainable}


class ReplayedExamples(Sequence):
    """`sft_example` of each record, replayed when it is read (an index or a slice), never kept: a data set of N
    trajectories costs each process the images of one example at a time instead of all N examples' images.

    With `check` (the default) every record is replayed once here and its images dropped, so that a record whose
    replay fails stops the run before training with the record named, as the eager list did."""

    def __init__(self, records, root, episode_config: EpisodeConfig, *, check: bool = True):
        self.records, self.root, self.episode_config = list(records), root, episode_config
        if check:
            for record in self.records:
                _replay(record, root, episode_config)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return sft_example(self.records[index], self.root, self.episode_config)


# ----------------------------------------------------------------------------------------------- tokenizing


def _find(sequence: list[int], pattern: list[int], start: int) -> int:
    n = len(pattern)
    return next((i for i in range(start, len(sequence) - n + 1) if sequence[i : i + n] == pattern), -1)


def assistant_spans(input_ids: list[int], tokenizer) -> list[tuple[int, int]]:
    """[start, end) token spans of the assistant turns: from the token after `<|im_start|>assistant\\n` through
    `<|im_end|>` and the newline token after it (trained too, as TRL's assistant masks do; the model must learn
    to end its turn). Found by token ids, so no string offsets are involved."""
    header = tokenizer(ASSISTANT_HEADER, add_special_tokens=False)["input_ids"]
    end_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    spans, position = [], 0
    while (found := _find(input_ids, header, position)) >= 0:
        start = end = found + len(header)
        while end < len(input_ids) and input_ids[end] != end_id:
            end += 1
        end = min(end + 1, len(input_ids))  # through <|im_end|>
        if len(newline) == 1 and end < len(input_ids) and input_ids[end] == newline[0]:
            end += 1
        spans.append((start, end))
        position = end
    return spans


def answer_token_mask(input_ids: list[int], spans: list[tuple[int, int]], tokenizer) -> torch.Tensor:
    """True on the tokens of the final answer (the content of the last `\\boxed{...}`) of each span in `spans`.
    Tokens are matched to characters by decoding them one by one, so a token that straddles the brace (BPE may
    merge `{` into a word) counts as answer too."""
    mask = torch.zeros(len(input_ids), dtype=torch.bool)
    for start, end in spans:
        pieces = [tokenizer.decode([token]) for token in input_ids[start:end]]
        found = protocol.last_boxed_span("".join(pieces))
        if found is None:
            continue
        offset = 0
        for index, piece in enumerate(pieces):
            if offset < found[1] and offset + len(piece) > found[0]:
                mask[start + index] = True
            offset += len(piece)
    return mask


def tokenize_example(processor, example: dict, max_length: int | None = None, with_answer_mask: bool = False) -> dict:
    """Tensors for one example: input_ids, attention_mask, labels (-100 outside trainable assistant turns),
    pixel_values, image_grid_thw; with `with_answer_mask`, also answer_mask (`answer_token_mask` of the trained
    turns, for `answer_loss_weight`). Raises ValueError when longer than `max_length` (truncating would cut image
    tokens apart from their pixels)."""
    text = processor.apply_chat_template(example["messages"], tokenize=False)
    images = example["images"] or None
    # The episode already put every image on the patch grid inside its budget: no second resize.
    encoded = processor(text=[text], images=images, return_tensors="pt", do_resize=False)
    input_ids = encoded["input_ids"][0]
    if max_length is not None and len(input_ids) > max_length:
        raise ValueError(f"example {example.get('id', '?')}: {len(input_ids)} tokens exceed max_length {max_length}")
    # Our own mask instead of TRL's assistant-only loss: that would train every assistant turn, including the
    # wrong-op calls the paper excludes.
    spans = assistant_spans(input_ids.tolist(), processor.tokenizer)
    if len(spans) != len(example["trainable"]):
        raise ValueError(
            f"example {example.get('id', '?')}: found {len(spans)} assistant turns in the tokens, "
            f"expected {len(example['trainable'])}"
        )
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    trained = [span for span, trainable in zip(spans, example["trainable"], strict=True) if trainable]
    for start, end in trained:
        labels[start:end] = input_ids[start:end]
    result = {"input_ids": input_ids, "attention_mask": encoded["attention_mask"][0], "labels": labels}
    if with_answer_mask:
        result["answer_mask"] = answer_token_mask(input_ids.tolist(), trained, processor.tokenizer)
    # The processor marks image tokens in mm_token_type_ids and the model reads them to place the images' 3-D
    # (M-RoPE) positions; rollouts pass them, so training must too, or the model learns other positions than it
    # is run with (found when a toy model trained to loss 0.3 generated nonsense).
    if "mm_token_type_ids" in encoded:
        result["mm_token_type_ids"] = encoded["mm_token_type_ids"][0]
    if images:
        result["pixel_values"] = encoded["pixel_values"]
        result["image_grid_thw"] = encoded["image_grid_thw"]
    return result


class SFTCollator:
    """Right-pads a list of tokenized examples (training needs no left padding) and concatenates their patches
    and grids in example order, which is the order the model matches them to image tokens."""

    def __init__(self, processor):
        tokenizer = processor.tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, examples: list[dict]) -> dict:
        length = max(len(e["input_ids"]) for e in examples)

        def padded(key, value):
            rows = [torch.cat([e[key], e[key].new_full((length - len(e[key]),), value)]) for e in examples]
            return torch.stack(rows)

        batch = {
            "input_ids": padded("input_ids", self.pad_id),
            "attention_mask": padded("attention_mask", 0),
            "labels": padded("labels", IGNORE_INDEX),
        }
        if all("answer_mask" in e for e in examples):
            batch["answer_mask"] = padded("answer_mask", False)
        if all("mm_token_type_ids" in e for e in examples):
            batch["mm_token_type_ids"] = padded("mm_token_type_ids", 0)
        with_images = [e for e in examples if "pixel_values" in e]
        if with_images:
            batch["pixel_values"] = torch.cat([e["pixel_values"] for e in with_images])
            batch["image_grid_thw"] = torch.cat([e["image_grid_thw"] for e in with_images])
        return batch


class SFTDataset(torch.utils.data.Dataset):
    """Examples tokenized when read, so a large set does not hold every image's patches in memory at once (and,
    from `ReplayedExamples`, not their images either). Already tokenized examples (with `input_ids`) pass through."""

    def __init__(self, processor, examples, max_length: int | None = None, with_answer_mask: bool = False):
        lazy = isinstance(examples, ReplayedExamples)  # list() would replay every record at once
        self.processor, self.examples, self.max_length = processor, examples if lazy else list(examples), max_length
        self.with_answer_mask = with_answer_mask

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        if "input_ids" in example:
            return example
        return tokenize_example(self.processor, example, self.max_length, self.with_answer_mask)


# Trajectories that correct a wrong op (their wrong-op turns are masked): what `loss_mask_summary` shows first.
SELF_CORRECTION_VARIANTS = ("wrong_crop", "two_wrong", "overlarge")


def loss_mask_summary(processor, records, root, episode_config: EpisodeConfig, *, max_chars: int = 600) -> str:
    """What the loss sees of one example, as text: the first self-correction trajectory (`SELF_CORRECTION_VARIANTS`)
    or else the first one, how many of its tokens are in the loss, and their text (the masked turns left out)."""
    shown = next((r for r in records if r.variant in SELF_CORRECTION_VARIANTS), records[0])
    tokens = tokenize_example(processor, sft_example(shown, root, episode_config))
    in_loss = tokens["labels"] != IGNORE_INDEX
    learned = processor.tokenizer.decode(tokens["input_ids"][in_loss])
    return (f"{shown.id}: {int(in_loss.sum())} of {tokens['input_ids'].numel()} tokens in the loss\n"
            f"learned: {learned[:max_chars]}")  # fmt: skip


# ------------------------------------------------------------------------------------------------- training


@dataclass(frozen=True)
class SFTConfig:
    """Notebook 20's training parameters. `training_settings()` are `training_arguments`' (through `make_trainer` or
    `pxr.training.sft_job.sft_job`); `lora_rank`, `freeze_vision` and `answer_loss_weight` are `make_trainer`'s."""

    learning_rate: float = 1e-3  # lr (paper: 1e-6 for the 7B model)
    lr_scheduler_type: str = "cosine"  # paper: cosine
    warmup_ratio: float = 0.1  # paper: 10 %
    adam_beta2: float = 0.999  # Trainer's default
    weight_decay: float = 0.0  # Trainer's default
    num_train_epochs: float = 1.0  # paper: 5
    max_steps: int = 8  # 0 means train for num_train_epochs
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 1
    save_steps: int = 200
    save_model_at_epochs: tuple[int, ...] = ()  # also save model_epoch<N> at the end of these epochs (paper: [1])
    logging_steps: int = 1
    lora_rank: int = 0  # 0 means full fine-tuning
    freeze_vision: bool = True  # paper
    answer_loss_weight: float = 0.0  # 0: plain SFT, the paper's (see make_trainer)
    bf16: bool = False
    gradient_checkpointing: bool = False
    report_to: str = "none"
    run_name: str = ""
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "save_model_at_epochs", check_epochs(self.save_model_at_epochs))
        if self.answer_loss_weight < 0:
            raise ValueError(f"answer_loss_weight must be >= 0, got {self.answer_loss_weight}")

    def training_settings(self) -> dict:
        """`training_arguments`' keywords (max_steps 0 as -1: train for the epochs) and `save_model_at_epochs`."""
        settings = asdict(self)
        for name in ("lora_rank", "freeze_vision", "answer_loss_weight"):
            settings.pop(name)
        return {**settings, "max_steps": self.max_steps or -1, "save_model_at_epochs": list(self.save_model_at_epochs)}


def freeze_vision_tower(model) -> int:
    """requires_grad False on every parameter of the vision tower; returns how many tensors were frozen."""
    frozen = 0
    for name, parameter in model.named_parameters():
        if "visual" in name:
            parameter.requires_grad_(False)
            frozen += 1
    return frozen


def _checkpoint_trainer_class():
    from transformers import Trainer

    from pxr.training.checkpoints import FromPretrainedResume

    class CheckpointTrainer(FromPretrainedResume, Trainer):
        """Trainer that resumes Qwen2.5-VL checkpoints correctly (see `pxr.training.checkpoints`) and adds
        `answer_loss_weight` x the mean cross-entropy of the answer tokens to the model's loss."""

        answer_loss_weight = 0.0

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mask = inputs.pop("answer_mask", None)  # ours, not the model's: it must not reach forward()
            loss, outputs = super().compute_loss(
                model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch
            )
            if self.answer_loss_weight and mask is not None and mask[:, 1:].any():
                extra = answer_loss(outputs.logits, inputs["labels"], mask)
                if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
                    # The model's loss is already divided over the whole accumulated batch; this one is per batch.
                    extra = extra / self.current_gradient_accumulation_steps
                loss = loss + self.answer_loss_weight * extra
            return (loss, outputs) if return_outputs else loss

    return CheckpointTrainer


def answer_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions where `mask` is True (shifted as the model's loss is)."""
    keep = mask[:, 1:] & (labels[:, 1:] != IGNORE_INDEX)
    return torch.nn.functional.cross_entropy(logits[:, :-1][keep].float(), labels[:, 1:][keep])


def checkpointing_setting(enabled: bool) -> dict[str, bool]:
    """Activation checkpointing as a `TrainingArguments` keyword: `activation_checkpointing` from transformers 5.23,
    `gradient_checkpointing` before it. vLLM's releases cap transformers below 5.23, so GPU servers run an older one
    (constraints-gpu.txt); from 5.23 on, the old name mirrors the new one, so either can be read back."""
    from transformers import TrainingArguments

    fields = TrainingArguments.__dataclass_fields__
    return {"activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing": enabled}


def training_arguments(
    output_dir,
    *,
    learning_rate: float,
    num_train_epochs: float = 1.0,
    max_steps: int = -1,
    per_device_train_batch_size: int = 1,
    gradient_accumulation_steps: int = 1,
    warmup_ratio: float = 0.1,
    lr_scheduler_type: str = "cosine",
    adam_beta2: float = 0.999,
    weight_decay: float = 0.0,
    save_steps: int = 500,
    seed: int = 0,
    bf16: bool = False,
    gradient_checkpointing: bool = False,
    logging_steps: int = 1,
    report_to: str | list[str] = "none",
    run_name: str = "",
):
    """The `TrainingArguments` of an SFT run. Made before the model is loaded in a launched job: under an accelerate
    DeepSpeed ZeRO-3 launch, creating them is what lets `from_pretrained` load the weights already sharded.

    `adam_beta2` and `weight_decay` default to Trainer's (0.999, 0). A from-scratch toy model learned to read scene
    crops with 0.98 and 0.01 and stayed at chance with the defaults (outputs/LOG.md, 2026-11-24).

    `report_to` names transformers' experiment trackers ("none", "tensorboard", "wandb", "trackio", ...) and
    `run_name` the run there (notebook 20 passes `<stage>/<run>`, `pxr.records.tracker_run_name`). TensorBoard writes
    under `output_dir/runs/`; the args, run name included, are its first record."""
    from transformers import TrainingArguments

    if not 0.0 <= warmup_ratio < 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
    return TrainingArguments(
        output_dir=str(Path(output_dir)),
        learning_rate=learning_rate,
        num_train_epochs=num_train_epochs,
        max_steps=max_steps,
        per_device_train_batch_size=per_device_train_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        warmup_steps=float(warmup_ratio),  # transformers 5 reads a float in [0, 1) as the warm-up ratio
        lr_scheduler_type=lr_scheduler_type,
        adam_beta2=adam_beta2,
        weight_decay=weight_decay,
        save_strategy="steps",
        save_steps=save_steps,
        seed=seed,
        bf16=bf16,
        **checkpointing_setting(gradient_checkpointing),
        use_cpu=not torch.cuda.is_available(),  # also what makes a multi-process launch on CPU use gloo
        report_to=report_to,
        run_name=run_name or None,
        remove_unused_columns=False,
        logging_steps=logging_steps,
        dataloader_num_workers=0,
    )


def make_trainer(
    model,
    processor,
    examples,
    *,
    args=None,
    lora=None,
    freeze_vision: bool = True,
    max_length: int | None = None,
    answer_loss_weight: float = 0.0,
    save_model_at_epochs=(),
    **settings,
):
    """A `transformers.Trainer` on `examples` (from `sft_example`, a `ReplayedExamples`, or already tokenized), using
    our collator.

    `settings` are `training_arguments`' (output_dir, learning_rate, max_steps, ...); or pass `args` made by it.
    Plain Trainer rather than TRL's SFTTrainer: SFTTrainer's dataset preparation re-renders and re-tokenizes
    multimodal data and skips images in `tool` turns (TRL's `prepare_multimodal_messages` fills the image
    placeholders of non-`tool` messages only), and its assistant mask trains wrong-op turns; our examples come
    tokenized with our mask, so `remove_unused_columns=False` keeps every key.
    `max_steps` > 0 overrides `num_train_epochs`. `lora`: a peft LoraConfig (see `pxr.models.lora_config`).

    `answer_loss_weight` > 0 adds that many times the mean loss of the final-answer tokens (inside `\\boxed{}`) to
    the mean over all trained tokens (0: plain SFT, the paper's). A from-scratch model needs it to learn to read
    (outputs/LOG.md, 2026-11-24): in the plain mean the one answer token among the turn's trivially learned format
    tokens left a small model at chance on a large plain digit after 600 steps, and weight 1 taught it in 300.

    `save_model_at_epochs` (e.g. [1]): at the end of each of these epochs, `save_model` writes the model to
    `epoch_model_dir(run, N)`, where the run folder is the parent of the checkpoints' `output_dir` (`EpochModelSaver`).
    """
    epochs = check_epochs(save_model_at_epochs)
    if answer_loss_weight < 0:
        raise ValueError(f"answer_loss_weight must be >= 0, got {answer_loss_weight}")
    replayed = isinstance(examples, ReplayedExamples)  # never tokenized; iterating would replay them all
    if answer_loss_weight and not replayed and any("input_ids" in e and "answer_mask" not in e for e in examples):
        raise ValueError("answer_loss_weight needs answer masks: tokenize examples with with_answer_mask=True")
    if (args is None) == (not settings):
        raise TypeError("make_trainer takes either args or training_arguments' settings (output_dir, ...)")
    args = args if args is not None else training_arguments(**settings)
    if lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora)
    if freeze_vision:
        freeze_vision_tower(model)
    if args.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):  # mirrors the new name
        model.enable_input_require_grads()  # checkpointed blocks need an input that requires grad
    model.train()
    trainer = _checkpoint_trainer_class()(
        model=model,
        args=args,
        train_dataset=SFTDataset(processor, examples, max_length, with_answer_mask=answer_loss_weight > 0),
        data_collator=SFTCollator(processor),
        processing_class=processor,
    )
    trainer.answer_loss_weight = answer_loss_weight
    if epochs:
        trainer.add_callback(EpochModelSaver(trainer, processor, epochs, Path(args.output_dir).parent))
    return trainer


# ----------------------------------------------------------------------------------------------- saving models


def _is_peft(model) -> bool:
    return hasattr(model, "merge_and_unload")


def loss_history(trainer) -> list[tuple[int, float]]:
    """(step, training loss) of every logged step of a `transformers.Trainer` (its `state.log_history`)."""
    return [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]


def save_model(trainer, processor, model_dir, *, keep_training: bool = False) -> Path:
    """The trainer's model as a self-contained folder that `pxr.models.load_model` reads: full weights and the
    processor. LoRA adapters are merged into the weights (RL and evaluation load plain checkpoints; the adapters stay
    in the checkpoints for resuming); `keep_training` merges a copy, so training can go on with the adapters.

    Every process must call it: under ZeRO-3 `trainer.save_model` gathers the shards; only the main process writes.
    The folder is written under another name and renamed when complete, so a folder that exists is whole."""
    model_dir = Path(model_dir)
    partial = model_dir.with_name(model_dir.name + ".partial")
    main = trainer.is_world_process_zero()
    if main and partial.exists():
        shutil.rmtree(partial)  # left by an interrupted save
    if _is_peft(trainer.model):
        if main:
            model = copy.deepcopy(trainer.model) if keep_training else trainer.model
            model.merge_and_unload().save_pretrained(str(partial))
    else:
        trainer.save_model(str(partial))
    if main:
        processor.save_pretrained(str(partial))
        if model_dir.exists():
            shutil.rmtree(model_dir)  # an earlier save of the same run, replaced by this one
        partial.rename(model_dir)
    return model_dir


def epoch_model_dir(run_dir, epoch: int) -> Path:
    """Where the model saved at the end of `epoch` goes: `<run>/model_epoch<N>`, beside the final `<run>/model`."""
    return Path(run_dir) / f"model_epoch{epoch}"


def epoch_models(run_dir, epochs) -> dict[int, Path]:
    """The epoch models of `epochs` that exist under `run_dir` (an epoch the run did not finish has none)."""
    return {e: epoch_model_dir(run_dir, e) for e in check_epochs(epochs) if epoch_model_dir(run_dir, e).is_dir()}


def check_epochs(epochs) -> tuple[int, ...]:
    """`save_model_at_epochs` as sorted distinct epochs; ValueError unless whole numbers >= 1."""
    epochs = list(epochs or ())
    if any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in epochs):
        raise ValueError(f"save_model_at_epochs must list whole epochs >= 1 (e.g. [1]), got {epochs}")
    return tuple(sorted(set(epochs)))


def _epoch_end(epoch: float | None) -> int | None:
    """The epoch just finished when the state's fractional epoch is a whole number (a run stopped by max_steps
    mid-epoch has not finished its epoch), else None."""
    if epoch is None or epoch < 1 or abs(epoch - round(epoch)) > 1e-6:
        return None
    return round(epoch)


class EpochModelSaver(TrainerCallback):
    """A `TrainerCallback` that saves the model (`save_model`, LoRA merged) at the end of the given epochs.

    A model already saved is kept (a resumed or re-run run does not write it again). On resume from a checkpoint
    taken at such an epoch's end whose model is missing (interrupted between the two saves), it is saved from the
    checkpoint's weights; a missing one from an epoch before the checkpoint cannot be made again, and is warned about.
    """

    def __init__(self, trainer, processor, epochs, run_dir):
        self.trainer, self.processor = trainer, processor
        self.epochs, self.run_dir = check_epochs(epochs), Path(run_dir)
        self.saved: dict[int, Path] = {}

    def _save(self, epoch: int) -> None:
        self.saved[epoch] = save_model(
            self.trainer, self.processor, epoch_model_dir(self.run_dir, epoch), keep_training=True
        )

    def on_train_begin(self, args, state, control, **kwargs):
        if state.num_train_epochs and self.epochs[-1] > state.num_train_epochs:
            warnings.warn(
                f"save_model_at_epochs {list(self.epochs)}: the run trains {state.num_train_epochs} epochs, so no "
                f"model_epoch{self.epochs[-1]} will be saved",
                stacklevel=2,
            )
        finished = _epoch_end(state.epoch) if state.global_step else None
        for epoch in self.epochs:
            if epoch_model_dir(self.run_dir, epoch).is_dir():
                continue
            if epoch == finished:  # the checkpoint's weights are this epoch's end
                self._save(epoch)
            elif state.global_step and state.epoch and state.epoch > epoch:
                warnings.warn(
                    f"{epoch_model_dir(self.run_dir, epoch)} is missing and cannot be made again: the run resumes "
                    f"from epoch {state.epoch:.2f}; retrain from scratch (delete the checkpoints) to get it",
                    stacklevel=2,
                )

    def on_epoch_end(self, args, state, control, **kwargs):
        epoch = _epoch_end(state.epoch)
        if epoch in self.epochs and not epoch_model_dir(self.run_dir, epoch).is_dir():
            self._save(epoch)


def train(trainer):
    """`trainer.train()`, resuming from the last checkpoint; a finished run takes no extra step (`pxr.training.checkpoints`)."""
    from pxr.training.checkpoints import train_resuming

    return train_resuming(trainer)
