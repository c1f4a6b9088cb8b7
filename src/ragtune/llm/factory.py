"""``load_llm``: the backend an ``--llm`` spec names.

Apart from the interface (``base.py``) it serves, since it imports every backend and
every backend imports the interface.
"""

from __future__ import annotations

import re
from pathlib import Path

from ragtune.errors import ModelNotFoundError
from ragtune.llm.base import LLM
from ragtune.url_options import redact

LLM_SPEC_HELP = (
    "a .gguf file (or gguf:PATH / llamacpp:PATH) for llama.cpp; "
    "openai:http://HOST:PORT/v1?model=NAME[&context=N] (or a plain http(s) URL) for an "
    "OpenAI-compatible server (OpenAI, vLLM, Ollama, llama-server; key from "
    "$RAGTUNE_LLM_API_KEY or $OPENAI_API_KEY); "
    "hf:DIR[#adapter=ADAPTER_DIR] for a Hugging Face model directory through transformers, "
    "optionally with a PEFT adapter"
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: not C:\


def load_llm(spec: LLM | str | Path | None = None) -> LLM:
    """An LLM from a spec; an LLM object is returned as it is.

    - ``None``: the bundled SmolLM2 through llama.cpp;
    - ``PATH.gguf``, ``gguf:PATH`` or ``llamacpp:PATH``: that GGUF file through llama.cpp;
    - ``openai:http://HOST:PORT/v1?model=NAME[&context=N]``, or the same URL
      without ``openai:``: an OpenAI-compatible endpoint (see
      :class:`ragtune.llm.openai_compat.OpenAICompatibleLLM` for the options);
    - ``hf:DIR`` or ``hf:DIR#adapter=ADAPTER_DIR[&context=N]``: a Hugging Face model
      directory (``save_pretrained`` output with a chat template) through transformers,
      optionally with a PEFT adapter directory (see
      :class:`ragtune.llm.transformers_backend.TransformersLLM`).
    """
    if spec is not None and not isinstance(spec, str | Path):
        return spec
    from ragtune.llm.llamacpp import LlamaCppLLM

    if spec is None:
        return LlamaCppLLM()
    text = str(spec).strip()
    if not text:
        raise ModelNotFoundError(f"empty --llm spec; expected {LLM_SPEC_HELP}")
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match and not isinstance(spec, Path) else ""
    if scheme in ("openai", "http", "https"):
        from ragtune.llm.openai_compat import OpenAICompatibleLLM

        return OpenAICompatibleLLM.from_spec(text)
    if scheme in ("gguf", "llamacpp"):
        return LlamaCppLLM(Path(text[len(scheme) + 1 :]).expanduser())
    if scheme == "hf":
        from ragtune.llm.transformers_backend import TransformersLLM

        return TransformersLLM.from_spec(text)
    if scheme:
        raise ModelNotFoundError(f"unknown LLM spec {redact(text)!r}; expected {LLM_SPEC_HELP}")
    path = Path(text).expanduser()
    if path.suffix.lower() != ".gguf":
        raise ModelNotFoundError(f"{redact(text)}: expected {LLM_SPEC_HELP}")
    return LlamaCppLLM(path)
