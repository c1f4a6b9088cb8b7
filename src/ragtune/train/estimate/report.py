"""An estimate (routes.estimate's dict) as the lines of a table a person reads."""

from __future__ import annotations

from typing import Any

from ragtune.train.pretrain.sizes import human


def gib(count: float) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**28 else f"{count / 2**20:.0f} MiB"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows, in reading order."""
    hardware = result["hardware"]
    model = result["model"]
    lines = [
        ("route", result["route"]),
        ("hardware", hardware["label"]),
        ("model", f"{model['name']}: {human(model['parameters'])} parameters"),
    ]
    if model.get("shape_assumed"):
        lines.append(("", "shape assumed from the parameter count"))
    if result["route"] == "rag":
        return lines + _rag_rows(result)
    if model.get("trainable_parameters") != model["parameters"]:
        lines.append(("trainable", human(model["trainable_parameters"])))
    data = result["data"]
    lines.append(("data", ", ".join(f"{key} {value:,}" for key, value in data.items())))
    lines.append(("steps", f"{result['steps']:,} ({human(result['trained_tokens'])} tokens)"))
    lines.append(("FLOPs", f"{result['flops']:.3g} (6·N·D = {result['flops_6nd']:.3g})"))
    memory = result["memory_bytes"]
    for part in ("process", "weights", "gradients", "optimizer", "activations", "logits"):
        if memory[part]:
            lines.append((f"memory: {part}", gib(memory[part])))
    fits = "fits" if result["fits"] else "does NOT fit"
    lines.append(
        (
            "memory: peak",
            f"{gib(memory['total'])} ({fits} in {gib(result['memory_available_bytes'])})",
        )
    )
    lines += _time_rows(result)
    ratio = result["data_over_chinchilla"]
    lines.append(
        (
            "Chinchilla",
            f"{human(result['chinchilla_tokens'])} tokens optimal for this size; "
            f"the data is {ratio:.2g}x that",
        )
    )
    for note in result.get("notes", []):
        lines.append(("note", note))
    return lines


def _time_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    seconds = result["seconds"]
    lines = [
        (f"time: {phase}", duration(value))
        for phase, value in seconds.items()
        if phase != "total" and value >= 0.05
    ]
    lines.append(("wall time", duration(seconds["total"])))
    if result.get("money") is not None:
        price = result["hardware"]["price_per_hour"]
        lines.append(("money", f"${result['money']:.2f} (at ${price:.2f}/h)"))
    return lines


def _rag_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    rag = result["rag"]
    lines = [
        ("data", f"{rag['files']:,} files, {rag['documents']:,} documents"),
        ("chunks", f"{rag['chunks']:,} ({human(rag['chunk_tokens'])} word pieces embedded)"),
        ("embedding FLOPs", f"{result['flops']:.3g}"),
    ]
    lines += _time_rows(result)
    if rag.get("ingest_memory_bytes"):
        lines.append(("ingest: peak memory", gib(rag["ingest_memory_bytes"])))
    lines.append(("index on disk", gib(rag["index_bytes"])))
    question = rag["question_seconds"]
    for phase in ("retrieval", "prompt", "generation"):
        lines.append((f"question: {phase}", f"{question[phase]:.2f} s"))
    lines.append(
        (
            "question: total",
            f"{question['total']:.2f} s (top {rag['top_k']}, {rag['answer_tokens']} answer tokens)",
        )
    )
    return lines
