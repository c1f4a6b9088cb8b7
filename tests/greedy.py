"""Greedy continuations from transformers and from llama.cpp (xllamacpp), as token ids.

"Equal" between a Hugging Face model and its GGUF export means these two lists are equal,
both fed the same prompt ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PROMPT = "The capital of France is"
NEW_TOKENS = 10


def load_model(model_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def prompt_ids(model_dir: Path, text: str = PROMPT) -> list[int]:
    from transformers import AutoTokenizer

    return list(AutoTokenizer.from_pretrained(model_dir)(text, add_special_tokens=False).input_ids)


def hf_greedy(
    model: Any, ids: list[int], new_tokens: int = NEW_TOKENS, ignore_eos: bool = False
) -> list[int]:
    """transformers' greedy continuation of ``ids``; with ``ignore_eos`` always
    ``new_tokens`` long, as llama.cpp's with ``ignore_eos``."""
    import torch

    prompt = torch.tensor([ids])
    with torch.no_grad():
        output = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens if ignore_eos else 0,
            do_sample=False,
            pad_token_id=model.config.eos_token_id,
        )
    return list(output[0, len(ids) :].tolist())


def llamacpp_server(gguf_file: Path, n_ctx: int = 256) -> Any:
    """llama.cpp in this process (xllamacpp), one thread, listening on loopback."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_file)
    params.n_ctx = n_ctx
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.verbosity = -1
    return xllamacpp.Server(params)


def llamacpp_post(server: Any, path: str, body: dict[str, Any]) -> Any:
    """One request to the server's native HTTP API."""
    import httpx

    url = f"{str(server.listening_address).rstrip('/')}{path}"
    response = httpx.post(url, json=body, timeout=60)
    response.raise_for_status()
    return response.json()


def server_greedy(
    server: Any, ids: list[int], new_tokens: int = NEW_TOKENS, ignore_eos: bool = False
) -> list[int]:
    """llama.cpp's greedy continuation of ``ids``, as token ids. The native endpoint returns
    the ids themselves; the OpenAI-style one joins a token that ends mid-character (a lone
    byte, which random or barely trained models emit) to the next in its log-probabilities."""
    request = {
        "prompt": ids,
        "n_predict": new_tokens,
        "temperature": 0,
        "repeat_penalty": 1.0,
        "ignore_eos": ignore_eos,
        "return_tokens": True,
    }
    return list(llamacpp_post(server, "/completion", request)["tokens"])


def llamacpp_greedy(gguf_file: Path, ids: list[int], new_tokens: int = NEW_TOKENS) -> list[int]:
    """``server_greedy`` on a server started for this one question."""
    server = llamacpp_server(gguf_file)
    try:
        return server_greedy(server, ids, new_tokens)
    finally:
        del server
