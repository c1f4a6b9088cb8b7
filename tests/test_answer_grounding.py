"""Sentence-level grounding: which source supports each answer sentence, and where.

The rules are checked on constructed answers against constructed sources, with the
real default embedder (decisions only, no cosine asserted); the end-to-end case runs
the bundled SmolLM2 through llama.cpp on the demo shop.
"""

from __future__ import annotations

import pytest
from tests.helpers import POTION_PATH

from ragtune import NodeWithScore, TextNode, VectorStoreIndex
from ragtune.errors import RagtuneError
from ragtune.index.embedding import make_embedder
from ragtune.llm import load_llm
from ragtune.query.assembly import NO_SUPPORTED_ANSWER, AnswerAssembler
from ragtune.query.cleanup import CUT_MARK, MarkupFilter, strip_markup
from ragtune.query.extractive import extract_answer
from ragtune.query.grounding import GroundingMode, Passages, SupportChecker
from ragtune.query.sentences import SentenceBuffer, split_sentences

QUESTION = "What is the flavor of the dark energy potion?"
POTION = (
    "Price: $12.99\n\n"
    "The Dark Energy Potion is a dark red energy drink brewed in small batches. "
    "Its flavor is bold cherry cola, with a faint hint of vanilla at the finish. "
    "Each bottle holds 330 ml and contains 80 mg of caffeine from green coffee beans.\n\n"
    "Tastes exactly like cherry cola and kept me awake through a whole dungeon crawl.\n\n"
    "Reviewed by Mira K."
)
ELIXIR = (
    "Frost Giant Elixir is an icy blue tonic distilled from glacier mint and juniper. "
    "It is served chilled and keeps for two years unopened."
)


def node(text: str, title: str) -> NodeWithScore:
    return NodeWithScore(TextNode(text=text, metadata={"title": title}), 0.5)


@pytest.fixture(scope="module")
def embed():  # type: ignore[no-untyped-def]
    return make_embedder(None).embed


@pytest.fixture(scope="module")
def sources() -> list[NodeWithScore]:
    return [node(ELIXIR, "Frost Giant Elixir"), node(POTION, "Dark Energy Potion")]


@pytest.fixture(scope="module")
def checker(sources: list[NodeWithScore], embed) -> SupportChecker:  # type: ignore[no-untyped-def]
    return SupportChecker(Passages.of(sources, embed), QUESTION)


def assemble(
    sources: list[NodeWithScore],
    checker: SupportChecker,
    answer: str,
    grounding: GroundingMode = "strict",
    budget_spent: bool = False,
    piece_size: int = 3,
) -> tuple[AnswerAssembler, str]:
    """Feed ``answer`` in small pieces, as a model streams it; return what was emitted."""
    assembler = AnswerAssembler(sources, checker, grounding)
    emitted = "".join(
        assembler.feed(answer[i : i + piece_size]) for i in range(0, len(answer), piece_size)
    )
    emitted += assembler.finish(budget_spent)
    assert emitted == assembler.text
    return assembler, emitted


def test_sentences_carry_offsets_into_their_text() -> None:
    text = (
        "The potion costs $12.99, e.g. cheap. Ask Dr. Mira about it! It is red. [2]\n"
        "- Volume: 330 ml\n| Flavor | Bold cherry cola |"
    )
    sentences = split_sentences(text)
    assert [s.text for s in sentences] == [
        "The potion costs $12.99, e.g. cheap.",
        "Ask Dr. Mira about it!",
        "It is red. [2]",
        "- Volume: 330 ml",
        "| Flavor | Bold cherry cola |",
    ]
    assert all(text[s.start : s.end] == s.text for s in sentences)


def test_a_stream_yields_each_sentence_once_it_is_whole() -> None:
    buffer = SentenceBuffer()
    first = buffer.feed("It costs $12.")
    assert first == []  # "$12." may go on as "$12.99"
    assert buffer.feed("99. It is red") == [("It costs $12.99.", False)]
    assert buffer.feed(".\n- Volume") == [("It is red.", False)]
    assert buffer.flush() == [("- Volume", True)]


def test_a_paraphrase_is_supported_by_the_right_span(
    sources: list[NodeWithScore], checker: SupportChecker
) -> None:
    checked = checker.check("The potion tastes of bold cherry cola with a hint of vanilla.")
    assert checked.supported and checked.sources == [2]
    (evidence,) = checked.evidence
    span = sources[1].text[evidence.start : evidence.end]
    # The span opens at the sentence that says it; "tastes" is in a review after it.
    assert span.startswith("Its flavor is bold cherry cola, with a faint hint of vanilla")
    assert span.endswith(
        "Tastes exactly like cherry cola and kept me awake through a whole dungeon crawl."
    )


@pytest.mark.parametrize(
    "sentence",
    [
        "The dark energy potion costs $15.",  # a number in no source
        "The flavor was invented by Gandalf in Rivendell.",  # names in no source
        "The flavor of the dark energy potion is mango.",  # its only claim is in no source
        "It is an excellent choice for adventurers who want sweet chocolate treats.",
        "Yes.",  # nothing to check
    ],
)
def test_invented_facts_and_claims_are_unsupported(checker: SupportChecker, sentence: str) -> None:
    checked = checker.check(sentence)
    assert not checked.supported
    assert checked.sources == [] and checked.evidence == []


def test_a_cited_source_that_does_not_support_the_sentence_is_replaced(
    checker: SupportChecker,
) -> None:
    checked = checker.check("Each bottle holds 330 ml of the drink [1].")
    assert checked.supported and checked.sources == [2]


def test_strict_drops_mark_flags_off_keeps(
    sources: list[NodeWithScore], checker: SupportChecker
) -> None:
    answer = (
        "The flavor is bold cherry cola with a hint of vanilla. "
        "It was first brewed by Gandalf in 1802."
    )
    strict, emitted = assemble(sources, checker, answer, "strict")
    assert emitted == "The flavor is bold cherry cola with a hint of vanilla [2]."
    assert [s.supported for s in strict.sentences] == [True]
    assert strict.unsupported_dropped == 1
    # Attributed although the model wrote no [n]: the cited source is the supporting one.
    assert [c.number for c in strict.citations] == [2]

    mark, emitted = assemble(sources, checker, answer, "mark")
    assert [s.supported for s in mark.sentences] == [True, False]
    assert emitted.endswith("It was first brewed by Gandalf in 1802.")
    assert mark.sentences[1].sources == []

    off, emitted = assemble(sources, checker, answer, "off")
    assert emitted == answer and off.sentences == [] and off.citations == []


def test_nothing_supported_says_so_or_falls_back(
    sources: list[NodeWithScore], checker: SupportChecker
) -> None:
    invented = "It was first brewed by Gandalf in 1802."
    _, emitted = assemble(sources, checker, invented)
    assert emitted == NO_SUPPORTED_ANSWER
    fallback = AnswerAssembler(
        sources,
        checker,
        "strict",
        lambda: extract_answer("How much does one bottle hold?", checker.passages),
    )
    fallback.feed(invented)
    assert fallback.finish(False) == (
        "Each bottle holds 330 ml and contains 80 mg of caffeine from green coffee beans [2]."
    )
    assert fallback.fell_back and [c.number for c in fallback.citations] == [2]


def test_auto_adds_the_extractive_answer_after_a_generated_answer_that_was_cut(
    sources: list[NodeWithScore], checker: SupportChecker
) -> None:
    def extractive():  # type: ignore[no-untyped-def]
        return extract_answer("How much does one bottle hold?", checker.passages)

    supported = "The potion tastes of bold cherry cola with a hint of vanilla."
    invented = "It was first brewed by Gandalf in 1802."
    cut = AnswerAssembler(sources, checker, "strict", extractive)
    emitted = cut.feed(f"{supported} {invented}") + cut.finish(False)
    assert emitted.startswith(supported.rstrip(".") + " [2].")
    assert emitted.endswith("contains 80 mg of caffeine from green coffee beans [2].")
    assert cut.supplemented and not cut.fell_back and len(cut.sentences) == 2
    # A generated answer kept whole is the answer: nothing is added to it.
    whole = AnswerAssembler(sources, checker, "strict", extractive)
    assert whole.feed(supported) + whole.finish(False) == supported.rstrip(".") + " [2]."
    assert not whole.supplemented
    # Without a fallback (generate mode) a cut answer stays as grounding left it.
    plain = AnswerAssembler(sources, checker, "strict")
    assert plain.feed(f"{supported} {invented}") + plain.finish(False) == (
        supported.rstrip(".") + " [2]."
    )


def test_a_cut_answer_ends_at_a_sentence_or_is_marked(
    sources: list[NodeWithScore], checker: SupportChecker
) -> None:
    whole = "Each bottle holds 330 ml of the drink."
    _, emitted = assemble(sources, checker, whole + " Its flavor is bold cherry", budget_spent=True)
    assert emitted == "Each bottle holds 330 ml of the drink [2]."
    only, emitted = assemble(
        sources, checker, "Its flavor is bold cherry cola with", budget_spent=True
    )
    assert only.truncated and emitted.endswith(CUT_MARK)
    # Without the budget spent, an answer without a final stop is whole.
    _, emitted = assemble(sources, checker, "Bold cherry cola with a hint of vanilla")
    assert not emitted.endswith(CUT_MARK)


def test_repeated_sentences_are_dropped(
    sources: list[NodeWithScore], checker: SupportChecker
) -> None:
    sentence = "Each bottle holds 330 ml of the drink."
    assembler, emitted = assemble(sources, checker, f"{sentence} {sentence.upper()} {sentence}")
    assert emitted == "Each bottle holds 330 ml of the drink [2]."
    assert assembler.repeats_dropped == 2


@pytest.mark.parametrize("grounding", ["strict", "mark", "off"])
def test_markup_and_script_are_never_emitted(
    sources: list[NodeWithScore], checker: SupportChecker, grounding: GroundingMode
) -> None:
    answer = (
        'Each bottle holds <b>330 ml</b>. <script src="https://evil.example/x.js"></script>'
        "<script>alert('the flavor is mango. Buy now!')</script> Its flavor is bold "
        "cherry cola.<!-- note --> <img src=x onerror=alert(1)"
    )
    for piece_size in (1, 4, len(answer)):
        _, emitted = assemble(sources, checker, answer, grounding, piece_size=piece_size)
        assert "<" not in emitted and "script" not in emitted and "mango" not in emitted
        assert "330 ml" in emitted and "cherry cola" in emitted


def test_markup_filter_keeps_comparisons_as_text() -> None:
    assert strip_markup("a < b and 3<4 but <i>not</i> this") == "a < b and 3<4 but not this"
    stream = MarkupFilter()
    text = "".join(stream.feed(ch) for ch in "x <= y <scr") + stream.flush()
    assert text == "x <= y "


def test_bad_modes_are_refused_in_one_line(shop_index: VectorStoreIndex) -> None:
    with pytest.raises(RagtuneError, match="grounding must be one of strict, mark, off"):
        shop_index.as_query_engine(grounding="loose")  # type: ignore[arg-type]
    with pytest.raises(RagtuneError, match="answer_mode must be one of"):
        shop_index.as_query_engine(answer_mode="guess")  # type: ignore[arg-type]


def test_demo_answer_is_grounded_and_cites_the_potion_page(
    shop_index: VectorStoreIndex, shop_url: str
) -> None:
    engine = shop_index.as_query_engine(llm=load_llm(), answer_mode="generate")
    tokens, streamed = engine.stream(QUESTION)
    pieces = list(tokens)
    assert streamed.response == "".join(pieces).strip()
    assert "cherry cola" in streamed.response.lower()
    assert streamed.sentences and all(s.supported for s in streamed.sentences)
    cited = [c.node.metadata["url"] for c in streamed.citations]
    assert shop_url + POTION_PATH in cited
    for sentence in streamed.sentences:
        for evidence in sentence.evidence:
            text = streamed.source_nodes[evidence.number - 1].text
            assert 0 <= evidence.start < evidence.end <= len(text)
    as_json = streamed.to_dict()["sentences"][0]
    assert set(as_json) == {"text", "supported", "sources", "evidence"}
    assert set(as_json["evidence"][0]) == {"n", "start", "end"}
