"""``load_llm``: the backend an ``--llm`` spec names, looked up by its scheme.

Apart from the interface (``base.py``) it serves, since it imports every backend and
every backend imports the interface.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ragtune.errors import ModelNotFoundError
from ragtune.llm.base import LLM
from ragtune.url_options import ModelSpec, parse_spec, redact

LLM_SPEC_HELP = (
    "a .gguf file (or gguf:PATH / llamacpp:PATH) for llama.cpp; "
    "openai:http://HOST:PORT/v1?model=NAME[&context=N] (or a plain http(s) URL) for an "
    "OpenAI-compatible server (OpenAI, vLLM, Ollama, llama-server; key from "
    "$RAGTUNE_LLM_API_KEY or $OPENAI_API_KEY); "
    "hf://OWNER/NAME[@REVISION]/FILE.gguf for a GGUF from the Hugging Face Hub (cached; "
    "ragtune models pull OWNER/NAME FILE.gguf fetches it ahead); "
    "hf:DIR[#adapter=ADAPTER_DIR] for a Hugging Face model directory through transformers, "
    "optionally with a PEFT adapter"
)


def _llama_cpp(spec: ModelSpec) -> LLM:
    from ragtune.llm.llamacpp import LlamaCppLLM

    path = Path(spec.target).expanduser()
    if not spec.scheme and path.suffix.lower() != ".gguf":
        raise ModelNotFoundError(f"{redact(spec.text)}: expected {LLM_SPEC_HELP}")
    return LlamaCppLLM(path)


def _openai_compatible(spec: ModelSpec) -> LLM:
    from ragtune.llm.openai_compat import OpenAICompatibleLLM

    return OpenAICompatibleLLM.from_spec(spec.text)


def _transformers(spec: ModelSpec) -> LLM:
    from ragtune.llm.transformers_backend import TransformersLLM

    return TransformersLLM.from_spec(spec.text)


def _hub_gguf(spec: ModelSpec) -> LLM:
    from ragtune.llm.hub import gguf_for_llm, parse_hub_uri
    from ragtune.llm.llamacpp import LlamaCppLLM

    return LlamaCppLLM(gguf_for_llm(parse_hub_uri(spec.text)))


def _hugging_face(spec: ModelSpec) -> LLM:
    # huggingface_hub's own URI form, hf://OWNER/NAME/FILE, is a file on the Hub;
    # hf:DIR (no //) has always meant a local transformers directory.
    if spec.target.startswith("//"):
        return _hub_gguf(spec)
    return _transformers(spec)


# Each backend imports its heavy dependencies only when a spec asks for it.
# The empty scheme is a path: a .gguf file.
LLM_FACTORIES: dict[str, Callable[[ModelSpec], LLM]] = {
    "": _llama_cpp,
    "gguf": _llama_cpp,
    "llamacpp": _llama_cpp,
    "openai": _openai_compatible,
    "http": _openai_compatible,
    "https": _openai_compatible,
    "hf": _hugging_face,
}


def load_llm(spec: LLM | str | Path | None = None) -> LLM:
    """An LLM from a spec; an LLM object is returned as it is.

    - ``None``: the bundled SmolLM2 through llama.cpp;
    - ``PATH.gguf``, ``gguf:PATH`` or ``llamacpp:PATH``: that GGUF file through llama.cpp;
    - ``openai:http://HOST:PORT/v1?model=NAME[&context=N]``, or the same URL
      without ``openai:``: an OpenAI-compatible endpoint (see
      :class:`ragtune.llm.openai_compat.OpenAICompatibleLLM` for the options);
    - ``hf://OWNER/NAME[@REVISION]/FILE.gguf``: a GGUF file from the Hugging Face Hub
      through llama.cpp, loaded from the cache with no request; a file not yet cached is
      downloaded first (checked against the Hub's SHA-256), unless ``HF_HUB_OFFLINE`` is
      set (see :mod:`ragtune.llm.hub`);
    - ``hf:DIR`` or ``hf:DIR#adapter=ADAPTER_DIR[&context=N]``: a Hugging Face model
      directory (``save_pretrained`` output with a chat template) through transformers,
      optionally with a PEFT adapter directory (see
      :class:`ragtune.llm.transformers_backend.TransformersLLM`).
    """
    if spec is not None and not isinstance(spec, str | Path):
        return spec
    if spec is None:
        from ragtune.llm.llamacpp import LlamaCppLLM

        return LlamaCppLLM()
    parsed = parse_spec(spec)
    if not parsed.text:
        raise ModelNotFoundError(f"empty --llm spec; expected {LLM_SPEC_HELP}")
    factory = LLM_FACTORIES.get(parsed.scheme)
    if factory is None:
        raise ModelNotFoundError(
            f"unknown LLM spec {redact(parsed.text)!r}; expected {LLM_SPEC_HELP}"
        )
    return factory(parsed)
