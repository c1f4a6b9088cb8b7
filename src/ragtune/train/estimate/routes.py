"""``estimate``: what a route (rag, lora, full, pretrain) would cost, before running it.

The request names the route, the data, the model, the settings (a recipe and flags, read
into the same settings the run reads) and the hardware; the answer is one JSON-able dict
(``report.py`` draws it as a table). Everything wrong with the request is an
``EstimateError`` (or the settings' own ``TrainingError``/``DatasetError``), raised before
anything slow runs; nothing is ever written but the measurement cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import EstimateError
from ragtune.train.estimate import shapes
from ragtune.train.estimate.hardware import Hardware, hardware
from ragtune.train.estimate.shapes import ModelSpec

ROUTES = ("rag", "lora", "full", "pretrain")


@dataclass
class Request:
    route: str
    data: list[Path] = field(default_factory=list)
    model: str | None = None  # a directory, a .gguf, a preset, or None
    params: float | None = None  # a bare parameter count
    tokens: int | None = None  # the data's tokens, instead of data
    recipe: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # flags: None means not given
    device: str = "this"
    gpus: int = 1
    mfu: float | None = None
    price_per_hour: float | None = None
    threads: int | None = None
    top_k: int = 5
    answer_tokens: int = 128


def estimate(request: Request) -> dict[str, Any]:
    route = request.route.strip().lower()
    if route not in ROUTES:
        raise EstimateError(f"unknown route {request.route!r}; routes: {', '.join(ROUTES)}")
    for path in request.data:
        if not path.exists():
            raise EstimateError(f"data {path} does not exist")
    if request.tokens is not None and request.tokens <= 0:
        raise EstimateError(f"--tokens must be positive, not {request.tokens}")
    where = hardware(
        request.device,
        request.gpus,
        request.mfu,
        request.price_per_hour,
        request.threads,
        measure=False,
    )  # the arguments checked before anything is measured
    if route == "rag":
        return _rag(request, where)
    return _training(route, request, where)


def _measured(where: Hardware, request: Request) -> Hardware:
    if where.name != "this":
        return where
    return hardware("this", 1, request.mfu, request.price_per_hour, request.threads)


# ----------------------------------------------------------------------------- training


def _training(route: str, request: Request, where: Hardware) -> dict[str, Any]:
    from ragtune.train.estimate.training import (
        finetune_plan,
        finetune_token_plan,
        pretrain_plan,
        price,
    )

    if route == "pretrain":
        config = _settings(request, "pretrain")
        model = _pretrain_model(request, config)
        if request.tokens is None and config.data is None and config.from_index is None:
            raise EstimateError("no data: give the text to train on, or --tokens N")
        plan = pretrain_plan(config, model, request.tokens)
    else:
        config = _settings(request, route)
        model = _finetune_model(request, config)
        if config.data is None and config.from_index is None:
            if request.tokens is None:
                raise EstimateError(
                    "no data: give a dataset file (or --from-index DIR, or --tokens N)"
                )
            plan = finetune_token_plan(config, model, request.tokens)
        elif model.directory is None:
            raise EstimateError(
                f"model {model.name!r} has no tokenizer to count the data with: "
                "give --tokens N instead of the data, or a model directory"
            )
        else:
            plan = finetune_plan(config, model)
    priced = price(plan, _measured(where, request))
    return _training_report(route, priced, _measured(where, request))


def _settings(request: Request, route: str) -> Any:
    from ragtune.train.config import build_settings

    settings = dict(request.settings)
    if request.data:
        if len(request.data) > 1:
            raise EstimateError(f"the {route} route takes one data path, not {len(request.data)}")
        settings["data"] = str(request.data[0])
    if route == "pretrain":
        from ragtune.train.pretrain.config import PretrainConfig

        known = PretrainConfig.__dataclass_fields__
        values = {k: v for k, v in settings.items() if k in known}
        return build_settings(request.recipe, values, PretrainConfig)
    from ragtune.train.config import TrainConfig

    known = TrainConfig.__dataclass_fields__
    values = {k: v for k, v in settings.items() if k in known}
    values["method"] = route
    return build_settings(request.recipe, values, TrainConfig)


def _pretrain_model(request: Request, config: Any) -> ModelSpec | None:
    """None: the shape the pretraining settings give (a preset and dimensions)."""
    vocab = config.vocab_size
    if request.params is not None:
        return shapes.from_parameters(request.params, config.shape().context, vocab)
    if request.model is None:
        return None
    name = request.model.strip().lower()
    if name in shapes.PRESETS:
        return shapes.from_preset(name, vocab, config.context)
    if shapes.public_name(name) is not None:
        return shapes.from_public(name, config.context)
    path = Path(request.model).expanduser()
    if path.is_dir():
        return shapes.from_directory(path, config.shape().context)
    raise EstimateError(
        f"model {request.model!r}: pretraining takes a size ({', '.join(shapes.PRESETS)}), "
        "a public shape (7b, llama3-8b, qwen2.5-7b ...), a model directory, or --params"
    )


def _finetune_model(request: Request, config: Any) -> ModelSpec:
    """The base model: a directory or GGUF (read), a public shape (``7b``, ``qwen2.5-7b``),
    or ``--params N``: Llama-2's proportions at that size, its 32,000-token vocabulary and
    untied embeddings (shapes.from_parameters)."""
    spec = request.model if request.model is not None else config.base
    if request.params is not None:
        if request.model is not None:
            raise EstimateError("give --model or --params, not both")
        return shapes.from_parameters(request.params, config.max_length, None, tied=False)
    if spec is not None and shapes.public_name(str(spec)) is not None:
        return shapes.from_public(str(spec), config.max_length)
    if spec is not None and str(spec).strip().lower() in shapes.PRESETS:
        raise EstimateError(
            f"model {spec!r} is a pretraining size; fine-tuning takes a model directory, "
            "a GGUF file, a public shape (7b, llama3-8b, qwen2.5-7b ...) or --params"
        )
    return _model_directory(spec, config.max_length)


def _answering_model(request: Request) -> ModelSpec:
    """RAG's answering model: a directory or GGUF (default: SmolLM2), a public shape, or
    ``--params N`` with Llama-2's proportions (fp16 weights: no GGUF to measure)."""
    if request.params is not None:
        if request.model is not None:
            raise EstimateError("give --model or --params, not both")
        return shapes.from_parameters(request.params, 4096, None, tied=False)
    if request.model is not None and shapes.public_name(request.model) is not None:
        return shapes.from_public(request.model)
    return _model_directory(request.model, None)


def _model_directory(spec: str | None, context: int | None) -> ModelSpec:
    from ragtune.train.models.base_model import resolve_base_model

    if spec is not None:
        path = Path(spec).expanduser()
        if path.is_dir() and not (path / "config.json").is_file():
            raise EstimateError(f"model {path} has no config.json")
    directory = resolve_base_model(spec)
    return shapes.from_directory(directory, context)


def _training_report(route: str, priced: Any, where: Hardware) -> dict[str, Any]:
    from ragtune.train.estimate.compute import trainable_parameters

    plan = priced.plan
    model = plan.model
    wall = priced.wall_seconds
    return {
        "route": route,
        "hardware": _hardware_report(where),
        "model": {
            "name": model.name,
            "parameters": model.parameters,
            "trainable_parameters": trainable_parameters(model, plan.method),
            "shape": model.shape.as_dict(model.vocab),
            "shape_assumed": model.assumed,
        },
        "data": plan.data,
        "steps": plan.steps,
        "trained_tokens": plan.trained_tokens,
        "flops": priced.flops,
        "flops_6nd": 6.0 * model.non_embedding * plan.trained_tokens,
        "memory_bytes": priced.memory.as_dict(),
        "memory_available_bytes": priced.memory_available,
        "fits": priced.fits,
        "seconds": {**priced.seconds, "total": wall},
        "money": priced.money,
        "chinchilla_tokens": priced.chinchilla_tokens,
        "data_over_chinchilla": plan.data_tokens / priced.chinchilla_tokens,
        "notes": plan.notes + where.notes,
    }


def _hardware_report(where: Hardware) -> dict[str, Any]:
    report: dict[str, Any] = {
        "device": where.name,
        "label": where.label,
        "devices": where.devices,
        "peak_flops": where.peak_flops,
        "mfu": where.mfu,
        "price_per_hour": where.price_per_hour,
    }
    if where.gpu is not None:
        report["source"] = where.gpu.source
    if where.machine is not None:
        report["threads"] = where.machine.threads
        report["bandwidth"] = where.machine.bandwidth
        report["measured_at"] = where.machine.measured_at
    return report


# ----------------------------------------------------------------------------- rag


def _rag(request: Request, where: Hardware) -> dict[str, Any]:
    from ragtune.train.estimate.rag import estimate_rag

    if not request.data:
        raise EstimateError("no data: give the files or folders to ingest")
    if request.top_k <= 0 or request.answer_tokens <= 0:
        raise EstimateError("--top-k and --answer-tokens must be positive")
    llm = _answering_model(request)
    where = _measured(where, request)
    chunk_size = request.settings.get("chunk_size")
    rag = estimate_rag(request.data, where, llm, chunk_size, request.top_k, request.answer_tokens)
    ingest = sum(rag.ingest_seconds.values())
    money = where.price_per_hour * ingest / 3600 if where.price_per_hour is not None else None
    return {
        "route": "rag",
        "hardware": _hardware_report(where),
        "model": {"name": llm.name, "parameters": llm.parameters},
        "data": {"files": rag.files, "documents": rag.documents, "chunks": rag.chunks},
        "flops": 2 * 22.7e6 * rag.chunk_tokens,
        "rag": rag.as_dict(),
        "memory_bytes": {"total": rag.ingest_memory} if rag.ingest_memory else {},
        "seconds": {**rag.ingest_seconds, "total": ingest},
        "money": money,
        "notes": [],
    }
