"""The baseline for bench/finetune_lora.py: LoRA SFT as a competent user writes it with
transformers' `Trainer` and PEFT, nothing ragtune-specific.

    .venv/bin/python bench/baselines/trainer_peft_lora.py --model DIR --data alpaca.json \
        --result result.json [--max-length 256 --batch-size 4 --steps 16 --threads 1]

Each Alpaca record becomes [user, assistant] messages (the instruction, with the input
appended after a blank line when there is one), rendered with the tokenizer's own chat
template and truncated to --max-length; the labels are the ids with the prompt part (the
template up to and including the assistant header) set to -100, so the loss is on the
reply only. `DataCollatorForSeq2Seq` pads each batch dynamically, `get_peft_model` adds
LoRA on all linear layers, `Trainer` trains on the CPU in fp32.

Written to --result (JSON): non-padding input tokens trained (Trainer's own counter,
`include_num_input_tokens_seen="non_padding"`), the seconds from `on_train_begin` to
`on_train_end` (the steps only: no model loading, no tokenizing), the final logged loss,
and this process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="A Hugging Face model directory.")
    parser.add_argument("--data", required=True, help="An Alpaca JSON file.")
    parser.add_argument("--result", required=True, help="Where to write the figures (JSON).")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch.set_num_threads(N); 0: torch's default."
    )
    parser.add_argument(
        "--output-dir", default=None, help="Trainer's output_dir (nothing is saved)."
    )
    return parser.parse_args()


def alpaca_messages(record: dict[str, str]) -> list[dict[str, str]]:
    user = record["instruction"]
    if record.get("input", "").strip():
        user = f"{user}\n\n{record['input']}"
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def tokenize(tokenizer, record: dict[str, str], max_length: int) -> dict[str, list[int]]:
    messages = alpaca_messages(record)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    prompt = tokenizer.apply_chat_template(
        messages[:-1], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(full, add_special_tokens=False, truncation=True, max_length=max_length)[
        "input_ids"
    ]
    prompt_length = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    labels = [-100] * min(prompt_length, len(ids)) + ids[prompt_length:]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def main() -> None:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    records = json.loads(Path(args.data).read_text(encoding="utf-8"))
    rows = [tokenize(tokenizer, record, args.max_length) for record in records]
    # a record whose reply was cut off entirely has nothing to learn from
    rows = [row for row in rows if any(label != -100 for label in row["labels"])]
    # a list is a map-style dataset to Trainer (the `datasets` package is not installed here)
    dataset = rows

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        ),
    )

    class StepClock(TrainerCallback):
        began = ended = 0.0

        def on_train_begin(self, *_args, **_kwargs):
            StepClock.began = time.perf_counter()

        def on_train_end(self, *_args, **_kwargs):
            StepClock.ended = time.perf_counter()

    training_args = TrainingArguments(
        output_dir=args.output_dir or tempfile.mkdtemp(prefix="trainer-peft-"),
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,  # transformers 5's spelling of warmup_ratio=0.05
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        seed=args.seed,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True),
        callbacks=[StepClock()],
    )
    trainer.train()
    seconds = StepClock.ended - StepClock.began
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    tokens = int(trainer.state.num_input_tokens_seen)
    result = {
        "steps": trainer.state.global_step,
        "seconds": seconds,
        "tokens": tokens,
        "tokens_per_second": tokens / seconds if seconds else 0.0,
        "final_loss": losses[-1] if losses else None,
        "mean_loss": sum(losses) / len(losses) if losses else None,
        "examples": len(rows),
        "threads": torch.get_num_threads(),
        "optim": str(training_args.optim),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(args.result).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
