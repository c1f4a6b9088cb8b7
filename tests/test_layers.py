"""The layers import one way: web, extract, index and llm never reach up into
the query engine, the CLI or training (lazy and type-checking imports count)."""

import ast
from pathlib import Path

import ragtune

PACKAGE = Path(ragtune.__file__).parent
LOWER_LAYERS = ("web", "extract", "index", "llm")
UPPER_MODULES = ("ragtune.query", "ragtune.cli", "ragtune.train")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, by absolute name (the package uses no relative imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            names.add(node.module or "")
    return names


def is_upper(name: str) -> bool:
    return any(name == upper or name.startswith(f"{upper}.") for upper in UPPER_MODULES)


def test_lower_layers_never_import_query_cli_or_train() -> None:
    reaching_up = sorted(
        f"{path.relative_to(PACKAGE)} imports {name}"
        for layer in LOWER_LAYERS
        for path in (PACKAGE / layer).rglob("*.py")
        for name in imported_modules(path)
        if is_upper(name)
    )
    assert reaching_up == []


def test_only_the_cli_imports_the_server() -> None:
    """``serve/`` sits on top beside the CLI: a library user never loads FastAPI."""
    reaching_in = sorted(
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in ("cli", "serve")
        for name in imported_modules(path)
        if name == "ragtune.serve" or name.startswith("ragtune.serve.")
    )
    assert reaching_in == []
