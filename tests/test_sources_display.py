"""What ``ask``, ``chat`` and ``retrieve`` print about sources and evidence (issue 13,
items 2 and 8): one row per page with its title, a row per passage with its section
and its similarity to the question (not a fused score that is 1.000 at the top), ``*``
on the sources the answer relies on, and the supporting spans quoted under the answer.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.helpers import POTION_PATH, run_cli, run_cli_in_process

from ragtune.cli.answers import (
    evidence_quotes,
    print_evidence,
    print_ranked,
    print_sources,
    print_streamed,
)
from ragtune.documents import (
    AnswerSentence,
    Citation,
    Evidence,
    NodeWithScore,
    Response,
    TextNode,
)

POTION = "http://shop.test/products/dark-energy-potion"
KITE = "http://shop.test/products/griffin-kite"
FLAVOR = "A dark red energy potion with a bold cherry cola flavor, for late-night adventurers."
REVIEW = "Reviewed by Mira K. (4 out of 5) Great taste, a little too sweet for me."
KITE_TEXT = "The Griffin Kite costs $29.50 and flies in light winds."
PASSAGE_ROW = re.compile(r"^   ([* ])\[(\d+)\] similarity (\d\.\d{3})(?:  (.+))?$")


def passage(
    text: str,
    url: str,
    title: str,
    headings: list[str],
    similarity: float | None,
    score: float = 1.0,
) -> NodeWithScore:
    metadata: dict[str, object] = {"url": url, "title": title, "heading_path": headings}
    if similarity is not None:
        metadata["similarity"] = similarity
    return NodeWithScore(TextNode(text=text, metadata=metadata, id_=f"{url}:{text[:8]}"), score)


def shop_sources() -> list[NodeWithScore]:
    """Prompt sources 1-3: two passages of the potion page around one of the kite page,
    with hybrid-style scores (1.000 at the top) unlike their similarities."""
    return [
        passage(FLAVOR, POTION, "Dark Energy Potion", ["Dark Energy Potion"], 0.77181, 1.0),
        passage(KITE_TEXT, KITE, "Griffin Kite", ["Griffin Kite", "Price"], 0.41249, 0.98),
        passage(
            REVIEW,
            POTION,
            "Dark Energy Potion",
            ["Dark Energy Potion", "Customer reviews"],
            0.70849,
            0.976,
        ),
    ]


def sources_block(stdout: str) -> list[str]:
    return stdout.split("Sources", 1)[1].splitlines()[1:]


def test_passages_of_one_page_share_one_row_with_title_and_section(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_sources(Response("The potion tastes of cherry cola.", shop_sources()))
    printed = capsys.readouterr().out
    assert "Sources (* cited in the answer)" in printed
    assert sources_block(printed) == [
        f"  Dark Energy Potion  {POTION}",
        "    [1] similarity 0.772",
        "    [3] similarity 0.708  Customer reviews",
        f"  Griffin Kite  {KITE}",
        "    [2] similarity 0.412  Price",
    ]
    assert printed.count(POTION) == 1
    assert "1.000" not in printed and "score" not in printed


def test_a_node_without_a_similarity_shows_its_score_named_as_score(
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = passage(KITE_TEXT, KITE, "", [], similarity=None, score=0.25)
    print_sources(Response("", [node]))
    assert sources_block(capsys.readouterr().out) == [f"  {KITE}", "    [1] score 0.250"]


def test_sources_cited_as_markers_or_by_supported_sentences_are_starred(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sources = shop_sources()
    response = Response(
        "The kite costs $29.50 [2]. The potion tastes of cherry cola.",
        sources,
        citations=[Citation(2, sources[1])],
        sentences=[
            AnswerSentence("The kite costs $29.50 [2].", True, [2], [Evidence(2, 0, 29)]),
            AnswerSentence("The potion tastes of cherry cola.", True, [1], [Evidence(1, 24, 56)]),
        ],
    )
    print_sources(response)
    lines = sources_block(capsys.readouterr().out)
    marks = {int(row[2]): row[1] for line in lines if (row := PASSAGE_ROW.match(line))}
    assert marks == {1: "*", 2: "*", 3: " "}


def test_evidence_is_quoted_under_the_answer_by_source(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sources = shop_sources()
    flavor = FLAVOR.index("bold cherry cola flavor")
    response = Response(
        "The potion has a bold cherry cola flavor. Mira found it a little too sweet.",
        sources,
        sentences=[
            AnswerSentence(
                "Mira found it a little too sweet.",
                True,
                [3],
                [Evidence(3, REVIEW.index("Great"), len(REVIEW))],
            ),
            AnswerSentence(
                "The potion has a bold cherry cola flavor.",
                True,
                [1],
                # Two overlapping spans of one source are quoted once, joined.
                [Evidence(1, flavor, flavor + 16), Evidence(1, flavor + 5, flavor + 23)],
            ),
        ],
    )
    print_evidence(response)
    assert capsys.readouterr().out.splitlines() == [
        "",
        "Evidence",
        '  [1] "bold cherry cola flavor"',
        '  [3] "Great taste, a little too sweet for me."',
    ]


def test_evidence_outside_the_sources_is_ignored_not_trusted() -> None:
    sources = shop_sources()
    response = Response(
        "The kite flies.",
        sources,
        sentences=[
            AnswerSentence(
                "The kite flies.",
                True,
                [2],
                [
                    Evidence(9, 0, 10),  # no source 9
                    Evidence(2, 40, 40),  # empty
                    Evidence(2, KITE_TEXT.index("flies"), 10_000),  # runs past the end
                ],
            )
        ],
    )
    assert evidence_quotes(response) == [(2, "flies in light winds.")]


def test_an_unchecked_answer_prints_no_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    sources = shop_sources()
    print_evidence(Response("Cherry cola [1].", sources, citations=[Citation(1, sources[0])]))
    assert capsys.readouterr().out == ""


def test_sentences_no_source_supports_are_named(capsys: pytest.CaptureFixture[str]) -> None:
    response = Response(
        "It is an excellent choice\nfor any adventurer.",
        shop_sources(),
        sentences=[AnswerSentence("It is an excellent choice\nfor any adventurer.", False)],
    )
    print_evidence(response)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "Evidence",
        '  not in the sources: "It is an excellent choice for any adventurer."',
    ]


def test_a_streamed_answer_prints_its_evidence_after_the_last_piece(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The engine's contract: the response's fields are set once the pieces are read."""
    sources = shop_sources()
    response = Response("", sources)

    def pieces() -> Iterator[str]:
        for piece in ["The kite ", "costs $29.50."]:
            response.response += piece
            yield piece
        evidence = [Evidence(2, 0, KITE_TEXT.index(" and"))]
        response.sentences = [AnswerSentence(response.response, True, [2], evidence)]

    print_streamed(pieces(), response)
    assert capsys.readouterr().out.splitlines() == [
        "The kite costs $29.50.",
        "",
        "Evidence",
        '  [2] "The Griffin Kite costs $29.50"',
    ]


def test_untrusted_text_is_printed_literally_without_control_characters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    title = "[bold red]Potion[/] :smile: \x1b]8;;http://evil.test\x07click\x1b]8;;\x07"
    text = "Cheap! [link=http://evil.test]now[/link]\x1b[2J \u202eiloveyou"
    node = passage(text, POTION + "?a=[/]", title, [title, "Reviews [/i]\r"], 0.5)
    response = Response(
        "Yes.",
        [node],
        sentences=[AnswerSentence("Yes.", True, [1], [Evidence(1, 0, len(text))])],
    )
    print_evidence(response)
    print_sources(response)
    print_ranked([node])
    printed = capsys.readouterr().out
    for control in ("\x1b", "\x07", "\r", "\u202e"):
        assert control not in printed
    assert "  [bold red]Potion[/] :smile: ]8;;http://evil.testclick]8;;" in printed
    assert '"Cheap! [link=http://evil.test]now[/link][2J iloveyou"' in printed
    assert "similarity 0.500  Reviews [/i]" in printed
    assert f"{POTION}?a=[/]" in printed


def test_retrieve_lists_similarity_url_then_title_and_section(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_ranked(shop_sources())
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        f"1. similarity 0.772  {POTION}",
        "   Dark Energy Potion",
        f"   {FLAVOR}",
    ]
    assert lines[3:5] == [f"2. similarity 0.412  {KITE}", "   Griffin Kite > Price"]
    assert lines[7] == "   Dark Energy Potion > Customer reviews"


def test_a_not_in_sources_response_says_why_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    reason = "best similarity 0.180 is below min_similarity 0.22"
    response = Response("no", shop_sources(), {"not_in_sources": True, "reason": reason})
    print_sources(response)
    captured = capsys.readouterr()
    assert "Sources (closest passages, none close enough)" in captured.out
    marks = [row[1] for line in captured.out.splitlines() if (row := PASSAGE_ROW.match(line))]
    assert marks == [" ", " ", " "]
    assert captured.err == f"({reason}; the LLM was not asked)\n"


def test_json_names_the_fused_score_and_the_similarity_apart() -> None:
    data = shop_sources()[2].to_dict()
    assert (data["score"], data["similarity"]) == (0.976, 0.70849)
    assert data["section"] == ["Customer reviews"]
    assert data["title"] == "Dark Energy Potion"


# --- through the command line, over the demo shop ----------------------------------------


@pytest.fixture()
def index_copy(shop_index_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(shop_index_dir, target)
    return target


def test_retrieve_json_carries_score_similarity_and_section(
    index_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_cli_in_process(
        capsys,
        monkeypatch,
        "retrieve",
        "dark energy potion reviews",
        "-i",
        str(index_copy),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)["results"]
    # The ranking's score orders the results; the similarity is another scale beside it.
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert all(0.0 < r["similarity"] < 1.0 for r in results)
    assert all(r["similarity"] == r["metadata"]["similarity"] for r in results)
    reviews = [r for r in results if r["url"].endswith(POTION_PATH) and r["section"]]
    assert [r["section"] for r in reviews] == [["Customer reviews"]]


def test_ask_groups_the_shop_sources_by_page(index_copy: Path) -> None:
    result = run_cli(
        "ask", "What is the flavor of the dark energy potion?", "--index", str(index_copy)
    )
    assert result.returncode == 0, result.stderr
    answer, _, block = result.stdout.partition("Sources (* cited in the answer)\n")
    assert answer.strip() and block
    pages = [line for line in block.splitlines() if not PASSAGE_ROW.match(line)]
    rows = [row for line in block.splitlines() if (row := PASSAGE_ROW.match(line))]
    urls = [page.split("  ")[-1] for page in pages]
    assert len(urls) == len(set(urls)), "a page is listed once, its passages under it"
    potion = next(page for page in pages if page.endswith(POTION_PATH))
    assert potion.startswith("  Dark Energy Potion  http://")
    numbers = sorted(int(row[2]) for row in rows)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > len(pages)
    assert "Customer reviews" in [row[4] for row in rows]
    assert "score" not in block
    # Whatever the answer relies on is starred; evidence quotes only starred sources.
    starred = {int(row[2]) for row in rows if row[1] == "*"}
    quoted = {int(n) for n in re.findall(r'^  \[(\d+)\] "', answer, flags=re.MULTILINE)}
    assert quoted <= starred
