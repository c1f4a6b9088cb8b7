"""The documentation stays true: README.md's and docs/*.md's code blocks against the code.

Issue #20's conventions (tests/docs_blocks.py does the reading, checking and running):
every ``ragtune ...`` line of a bash/sh/shell/console block must parse against the real
CLI (one test per block, named PAGE:LINE); a block after ``<!-- docs-test: run -->`` and
every python block is run, page by page in order, in one working directory per page
with ./examples and the demo shop at 127.0.0.1:8000 (served here on a free port); and
``<!-- docs-test: skip REASON -->`` exempts a block. The last tests feed the checker
hand-made mistakes, so that a checker that passes everything cannot pass here.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from tests.docs_blocks import (
    REPO,
    SHELL_LANGUAGES,
    Block,
    check_block,
    check_command,
    cli_root,
    documentation_pages,
    page_workdir,
    parse_blocks,
    ragtune_commands,
    read_page,
    run_block,
)


def _read_all() -> tuple[list[Block], list[str]]:
    blocks: list[Block] = []
    problems: list[str] = []
    for path in documentation_pages():
        page_blocks, page_problems = read_page(path)
        blocks.extend(page_blocks)
        problems.extend(page_problems)
    return blocks, problems


BLOCKS, DIRECTIVE_PROBLEMS = _read_all()


def _has_commands(block: Block) -> bool:
    commands, problems = ragtune_commands(block)
    return bool(commands or problems)


def _case(block: Block) -> object:
    marks = [pytest.mark.skip(reason=block.directive or "")] if block.skipped else []
    return pytest.param(block, id=block.where, marks=marks)


CHECKED = [_case(b) for b in BLOCKS if b.language in SHELL_LANGUAGES and _has_commands(b)]
RUNNABLE = [pytest.param(b, id=b.where) for b in BLOCKS if b.runnable]


@pytest.fixture(scope="module")
def cli() -> Any:
    return cli_root()


# --- the pages -----------------------------------------------------------------------------


def test_directives_are_well_formed() -> None:
    if DIRECTIVE_PROBLEMS:
        pytest.fail("\n".join(DIRECTIVE_PROBLEMS), pytrace=False)


@pytest.mark.parametrize("block", CHECKED)
def test_commands_parse(block: Block, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Relative paths that exist (./examples/...) are checked from the repository root,
    # where a reader of a fresh clone runs them.
    monkeypatch.chdir(REPO)
    problems = check_block(block, cli)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# Pages run side by side, each in its own directory, its blocks in order: two at a time
# halve the wall-clock time on a 2-core machine, and each block uses one thread.
PARALLEL_PAGES = max(1, min(2, len(os.sched_getaffinity(0))))


class PageRuns:
    """Runs the runnable blocks that the selected tests need, page by page in order and
    pages in parallel, and hands each test its block's outcome. A test of one block has
    the page's earlier blocks run first, so ``pytest -k 'README.md:120'`` alone works."""

    def __init__(self, root: Path, shop_address: str, wanted: list[Block]) -> None:
        self.root = root
        self.shop_address = shop_address
        self.outcomes: dict[str, Future[tuple[str, str]]] = {}
        last: dict[str, int] = {}
        for block in wanted:
            last[block.page] = max(last.get(block.page, 0), block.line)
        self.executor = ThreadPoolExecutor(max_workers=PARALLEL_PAGES)
        for page, line in last.items():
            blocks = [b for b in BLOCKS if b.page == page and b.runnable and b.line <= line]
            for block in blocks:
                self.outcomes[block.where] = Future()
            self.executor.submit(self._run_page, page, blocks)

    def _run_page(self, page: str, blocks: list[Block]) -> None:
        safe = page.replace("/", "_").replace(".", "_")
        failed = ""
        try:
            scratch = self.root / f"{safe}-scripts"
            scratch.mkdir(parents=True)
            workdir = page_workdir(self.root / safe)
            for block in blocks:
                outcome = self.outcomes[block.where]
                if failed:
                    outcome.set_result(("skip", f"an earlier block of the page failed: {failed}"))
                    continue
                reason = run_block(block, workdir, scratch, self.shop_address)
                if reason:
                    failed = reason.splitlines()[0]
                    outcome.set_result(("fail", reason))
                else:
                    outcome.set_result(("pass", ""))
        except BaseException as error:  # the tests waiting on this page must hear of it
            for block in blocks:
                if not self.outcomes[block.where].done():
                    self.outcomes[block.where].set_exception(error)

    def outcome(self, block: Block) -> tuple[str, str]:
        return self.outcomes[block.where].result()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def page_runs(
    request: pytest.FixtureRequest, shop_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PageRuns]:
    wanted = [
        block
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_blocks_run"
        for block in [item.callspec.params["block"]]
        if isinstance(block, Block)
    ]
    address = shop_url.split("://", 1)[1].rstrip("/")
    runs = PageRuns(tmp_path_factory.mktemp("docs"), address, wanted)
    yield runs
    runs.close()


@pytest.mark.parametrize("block", RUNNABLE)
def test_blocks_run(block: Block, page_runs: PageRuns) -> None:
    verdict, reason = page_runs.outcome(block)
    if verdict == "skip":
        pytest.skip(reason)
    if verdict == "fail":
        pytest.fail(reason, pytrace=False)


# --- the checker itself --------------------------------------------------------------------

BAD_PAGE = textwrap.dedent(
    """\
    # A page with mistakes

    ```bash
    ragtune ask --index ./idx --nope "What?"
    ragtune retrieve --index ./idx --mode fuzzy "potion"
    ragtune retrieve --index ./idx
    ragtune frobnicate --index ./idx
    ```

    ```console
    $ ragtune ask --index ./idx \\
        --top-k 0 "What?"   # out of range
    ragtune output lines are not commands --nope
    ```
    """
)

GOOD_PAGE = textwrap.dedent(
    """\
    ```bash
    # a comment line, then assignments, a pipe, a continuation and a URL with a '#'
    RAGTUNE_TORCH_THREADS=1 ragtune ingest --index ./idx http://127.0.0.1:8000/products --crawl
    ragtune ask --index ./idx --json "What is the flavor of the dark energy potion?" | head -1
    cd /tmp && ragtune retrieve --index ./idx \\
        --mode keyword -k 3 "potion"  # trailing comment --nope
    ragtune ask --index ./idx --llm "hf:./model#adapter=./lora" "What?" 2>/dev/null
    time ragtune --help
    ragtune models
    pip install ragtune --nope
    ```

    ```text
    ragtune ask --index DIR [--json] QUESTION...
    ```

    <!-- docs-test: skip a remote cluster -->
    ```bash
    ragtune frobnicate
    ```

    1. In a list item, indented:

        ```sh
        ragtune retrieve --index ./idx --nope "potion"
        ```
    """
)


def test_the_checker_catches_each_kind_of_mistake(cli: Any) -> None:
    blocks, directive_problems = parse_blocks("BAD.md", BAD_PAGE)
    assert not directive_problems
    problems = [problem for block in blocks for problem in check_block(block, cli)]
    assert len(problems) == 5, "\n".join(problems)
    bad_flag, bad_choice, missing_argument, unknown_command, out_of_range = problems
    assert bad_flag.startswith("BAD.md:4: ragtune ask --index ./idx --nope")
    assert bad_flag.endswith(": no such option --nope")
    assert bad_choice.startswith("BAD.md:5: ") and "fuzzy" in bad_choice
    assert (
        missing_argument.startswith("BAD.md:6: ") and "missing argument" in missing_argument.lower()
    )
    assert unknown_command.startswith("BAD.md:7: ") and "frobnicate" in unknown_command
    assert out_of_range.startswith("BAD.md:11: ") and "--top-k" in out_of_range


def test_the_checker_accepts_real_command_lines(cli: Any) -> None:
    blocks, directive_problems = parse_blocks("GOOD.md", GOOD_PAGE)
    assert not directive_problems
    assert [b.language for b in blocks] == ["bash", "text", "bash", "sh"]
    checked, synopsis, skipped = blocks[:3]
    commands, _ = ragtune_commands(checked)
    assert [command.line for command in commands] == [3, 4, 5, 7, 8, 9]
    assert commands[2].words[-1] == "potion"  # the continuation joined, the comment dropped
    assert "hf:./model#adapter=./lora" in commands[3].words
    assert check_block(checked, cli) == []
    assert synopsis.language == "text"  # a synopsis: not a shell block, so never checked
    assert skipped.skipped and skipped.directive == "skip a remote cluster"
    # The indented block is found, and its mistake is caught, at its own line.
    assert check_block(blocks[3], cli) == [
        'GOOD.md:25: ragtune retrieve --index ./idx --nope "potion": no such option --nope'
    ]


def test_misplaced_or_unknown_directives_are_reported() -> None:
    page = "<!-- docs-test: run -->\n\n```bash\ntrue\n```\n<!-- docs-test: runn -->\n```bash\n```\n"
    page += "<!-- docs-test: run -->\n```text\nragtune ask\n```\n"
    blocks, problems = parse_blocks("X.md", page)
    assert len(problems) == 3, problems
    assert problems[2].startswith("X.md:10: only bash, sh, shell, console and python blocks")
    assert problems[0].startswith("X.md:1: ") and "right before a code fence" in problems[0]
    assert problems[1].startswith("X.md:6: ") and "unknown directive 'runn'" in problems[1]
    assert blocks[0].directive is None  # a blank line between: not attached


def test_a_failing_runnable_block_fails(tmp_path: Path) -> None:
    page = textwrap.dedent(
        """\
        <!-- docs-test: run -->
        ```bash
        echo "made it" > made.txt
        echo "going wrong" >&2
        false
        echo "never here" > never.txt
        ```

        ```python
        from pathlib import Path
        assert Path("made.txt").exists() and Path("examples/shop").is_dir()
        raise SystemExit("python failed here")
        ```

        ```bash
        false  # not marked runnable: never run
        ```
        """
    )
    blocks, _ = parse_blocks("RUN.md", page)
    shell, python, unmarked = blocks
    assert shell.runnable and python.runnable and not unmarked.runnable
    workdir = page_workdir(tmp_path / "work")
    shell_failure = run_block(shell, workdir, tmp_path)
    assert shell_failure is not None
    assert shell_failure.startswith("RUN.md:2: exited 1") and "going wrong" in shell_failure
    assert (workdir / "made.txt").exists() and not (workdir / "never.txt").exists()
    python_failure = run_block(python, workdir, tmp_path)
    assert python_failure is not None and "python failed here" in python_failure


def test_a_runnable_block_reaches_the_demo_shop(shop_url: str, tmp_path: Path) -> None:
    page = textwrap.dedent(
        """\
        <!-- docs-test: run -->
        ```bash
        python -c 'import urllib.request as u; u.urlopen("http://127.0.0.1:8000/products")'
        ```
        """
    )
    (block,), _ = parse_blocks("SHOP.md", page)
    address = shop_url.split("://", 1)[1]
    assert run_block(block, page_workdir(tmp_path / "w"), tmp_path, address) is None


def test_a_runnable_block_is_held_to_its_limits(tmp_path: Path) -> None:
    page = textwrap.dedent(
        """\
        <!-- docs-test: run -->
        ```bash
        python -c 'import time; time.sleep(60)' &
        sleep 30
        ```

        <!-- docs-test: run -->
        ```python
        import time

        end = time.process_time() + 3
        while time.process_time() < end:
            pass
        ```
        """
    )
    (hang, busy), _ = parse_blocks("SLOW.md", page)
    workdir = page_workdir(tmp_path / "w")
    hung = run_block(hang, workdir, tmp_path, wall_limit=2)
    assert hung is not None and hung.startswith("SLOW.md:2: did not finish in 2 s")
    too_busy = run_block(busy, workdir, tmp_path, cpu_limit=1)
    assert too_busy is not None and "a command used over 1 s of CPU" in too_busy
    assert run_block(busy, workdir, tmp_path, cpu_limit=30) is None


def test_invented_paths_pass_the_check_and_the_cli_still_checks_them(tmp_path: Path) -> None:
    app = typer.Typer()

    @app.command()
    def train(data: Annotated[Path, typer.Option(exists=True, dir_okay=False)]) -> None:
        """Train."""

    @app.command()
    def other() -> None:
        """Another command, so that train is a subcommand as ragtune's are."""

    root: Any = typer.main.get_command(app)
    assert check_command(root, ["train", "--data", "./made-by-an-earlier-step.json"]) is None
    assert "is a directory" in (check_command(root, ["train", "--data", str(tmp_path)]) or "")
    assert check_command(root, ["train", "--dta", "x"]) == "no such option --dta"
    # The check changes nothing for good: the CLI itself still refuses a missing file.
    with pytest.raises(Exception, match="does not exist"):
        root.commands["train"].make_context("train", ["--data", str(tmp_path / "missing.json")])
