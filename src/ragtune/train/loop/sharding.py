"""Reading and writing weights whole when the model is sharded across processes.

Under DDP (or one process) every process holds the whole model, and ``state_dict()``
is the model. Under FSDP2 (``fully_shard``) each process holds 1/N of every parameter
as a ``DTensor`` shard, so a whole tensor is a collective: every process must take part
in the gather, in the same order, and the main process keeps the result on the CPU
(``full_state_dict=True, cpu_offload=True``: the others get nothing, so no GPU ever
holds the whole model). torch's ``torch.distributed.checkpoint.state_dict`` functions do
exactly that for FSDP1, FSDP2, DDP and plain modules alike, so ragtune calls them in
every case and a checkpoint reads the same whatever wrote it.

DeepSpeed keeps the optimizer state inside its engine, in its own partitioned format:
ragtune reads the final weights through ``accelerator.get_state_dict`` (which gathers
ZeRO-3's partitions) but cannot write a resumable checkpoint there (see ``check_run``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ragtune.errors import TrainingError

if TYPE_CHECKING:
    import torch

REPLICATED = "replicated"  # one process, or DDP: every process holds the whole model
FSDP = "fsdp"
DEEPSPEED = "deepspeed"


def strategy(accelerator: Any) -> str:
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        return FSDP
    if kind == DistributedType.DEEPSPEED:
        return DEEPSPEED
    return REPLICATED


def check_accelerator(accelerator: Any) -> None:
    """FSDP1 flattens parameters into shards that its own state-dict hooks alone can
    read back; ragtune is written and tested for FSDP2, which keeps each parameter."""
    if strategy(accelerator) == FSDP and not accelerator.is_fsdp2:
        raise TrainingError(
            "ragtune trains under FSDP version 2 only: set fsdp_version: 2 in the accelerate "
            "config (see examples/accelerate/fsdp-full-shard.yaml)"
        )


def check_run(accelerator: Any, total_steps: int, save_every: int, grad_accum: int) -> None:
    """Fail before training, not at the first checkpoint hours later."""
    if strategy(accelerator) != DEEPSPEED:
        return
    if save_every < total_steps:
        raise TrainingError(
            f"ragtune cannot write a resumable checkpoint under DeepSpeed (its optimizer "
            f"state is partitioned in DeepSpeed's own format) and this run would save one "
            f"every {save_every} steps of {total_steps}; use an FSDP config "
            "(examples/accelerate/fsdp-full-shard.yaml) or --save-every above --max-steps"
        )
    if grad_accum != 1:
        # DeepSpeed's engine treats every backward pass as the end of a step and keeps
        # its own accumulation count; ragtune's accumulation on top of it is untried.
        raise TrainingError(
            "under DeepSpeed ragtune needs --grad-accum 1; raise --batch-size or the number "
            "of processes instead, or use an FSDP config"
        )


def configure_deepspeed(accelerator: Any, batch_size: int, max_grad_norm: float) -> None:
    """Fill what accelerate would learn from a DataLoader (ragtune batches itself) and
    the clipping DeepSpeed applies in its own step; call before ``prepare``."""
    if strategy(accelerator) != DEEPSPEED:
        return
    settings = accelerator.state.deepspeed_plugin.deepspeed_config
    if settings.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        settings["train_micro_batch_size_per_gpu"] = batch_size
    if settings.get("gradient_clipping", "auto") == "auto":
        settings["gradient_clipping"] = max_grad_norm


def _whole(trainable_only: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(
        full_state_dict=True, cpu_offload=True, ignore_frozen_params=trainable_only
    )


def gather_weights(model: torch.nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    """The model's weights whole, named as ``model.state_dict()`` names them; on the main
    process only (elsewhere empty) when distributed. Every process must call it."""
    import torch
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    weights = get_model_state_dict(model, options=_whole(trainable_only))
    # A weight tied to another (lm_head to the embeddings) comes back as a second copy;
    # the model saves it once, under its first name, as save_pretrained does.
    wanted = trainable_names(model) if trainable_only else set(weights) - _tied_copies(model)
    return {
        name: value.detach().contiguous()
        for name, value in weights.items()
        if name in wanted and isinstance(value, torch.Tensor)
    }


def _tied_copies(model: torch.nn.Module) -> set[str]:
    every = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    return every - {name for name, _ in model.named_parameters()}


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, param in model.named_parameters() if param.requires_grad}


def gather_optimizer(model: torch.nn.Module, optimizer: Any) -> dict[str, Any]:
    """The optimizer's state whole, keyed by parameter name (not position), so it loads
    into the same model however it is sharded. Every process must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return dict(get_optimizer_state_dict(model, _unwrapped(optimizer), options=_whole(True)))


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Whole tensors into the model, each process keeping its own shard of them."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, dict(weights), options=options)  # it adds to the dict given


def load_optimizer(model: torch.nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    if _keyed_by_position(state):
        # A checkpoint written before optimizer state was keyed by name (ragtune 0.1's
        # first releases): torch's own loader reads it, for an unsharded model only.
        _unwrapped(optimizer).load_state_dict(state)
        return
    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, _unwrapped(optimizer), state, options=options)


def _keyed_by_position(state: dict[str, Any]) -> bool:
    entries = state.get("state")
    return isinstance(entries, dict) and any(isinstance(key, int) for key in entries)


def final_weights(
    accelerator: Any, network: torch.nn.Module, model: torch.nn.Module, trainable_only: bool
) -> dict[str, torch.Tensor] | None:
    """What ``save_pretrained`` must be given instead of reading the model itself: the
    whole weights where the model is sharded, None where it is whole already. Every
    process must call it; the main process saves."""
    kind = strategy(accelerator)
    if kind == REPLICATED:
        return None
    if kind == FSDP:
        return gather_weights(model, trainable_only)
    # DeepSpeed: accelerate gathers ZeRO-3's partitions (16-bit) into the main process.
    whole = accelerator.get_state_dict(network)
    prefix = _prefix_of(accelerator.unwrap_model(network), model)
    return {name[len(prefix) :]: value for name, value in whole.items() if name.startswith(prefix)}


def _prefix_of(network: torch.nn.Module, model: torch.nn.Module) -> str:
    for name, module in network.named_modules():
        if module is model:
            return f"{name}." if name else ""
    raise TrainingError("the model to save is not inside the trained network")  # a bug


def _unwrapped(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's wrapper: torch's state-dict functions read
    its ``state`` and ``param_groups`` directly."""
    return getattr(optimizer, "optimizer", optimizer)
