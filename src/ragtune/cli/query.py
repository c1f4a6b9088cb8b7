"""Commands that query an index: ``retrieve``, ``ask`` and ``chat``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from ragtune.cli.answers import (
    answer_without_index,
    print_evidence,
    print_ranked,
    print_sources,
    stream_answer,
)
from ragtune.cli.options import (
    AnswerModeOption,
    AnswerTokensOption,
    FilterOption,
    GroundingOption,
    IndexOption,
    JsonOption,
    MmrOption,
    ModeOption,
    TopKOption,
)
from ragtune.errors import RagtuneError
from ragtune.terminal import err, out, plain, styled

CHAT_HELP = "commands: /sources (last answer's sources), /reset (forget the history), /exit"


def retrieve_command(
    question: Annotated[str, typer.Argument(help="What to search for.")],
    index: IndexOption,
    top_k: TopKOption = 5,
    mode: ModeOption = "hybrid",
    filter: FilterOption = None,  # noqa: A002
    mmr: MmrOption = False,
    as_json: JsonOption = False,
) -> None:
    """Rank indexed passages for a question, without any LLM."""
    from ragtune.index.vector_index import VectorStoreIndex

    retriever = VectorStoreIndex.load(index).as_retriever(
        similarity_top_k=top_k,
        mode=mode,
        filters=filter,
        mmr=mmr,
    )
    nodes = retriever.retrieve(question)
    if as_json:
        out.print_data({"question": question, "results": [n.to_dict() for n in nodes]})
        return
    print_ranked(nodes)


def ask_command(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    index: Annotated[
        Path | None,
        typer.Option("--index", "-i", help="Index directory; without one the model answers alone."),
    ] = None,
    top_k: TopKOption = 4,
    llm: Annotated[
        str | None,
        typer.Option(
            help="The model: PATH.gguf (llama.cpp; default: bundled SmolLM2), or "
            "openai:http://HOST:PORT/v1?model=NAME[&context=N] for an OpenAI-compatible "
            "server (OpenAI, vLLM, Ollama, llama-server; key from $RAGTUNE_LLM_API_KEY "
            "or $OPENAI_API_KEY), or hf:DIR[#adapter=ADAPTER_DIR] for a Hugging Face "
            "model directory through transformers, with an optional PEFT adapter."
        ),
    ] = None,
    mode: ModeOption = "hybrid",
    filter: FilterOption = None,  # noqa: A002
    mmr: MmrOption = False,
    as_json: JsonOption = False,
    min_similarity: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Answer 'not in the sources' without the LLM when no passage is this "
            "similar to the question: a fixed cosine instead of the index's own "
            "calibration (default: calibrated at ingest; 0 always asks the LLM).",
        ),
    ] = None,
    grounding: GroundingOption = "strict",
    answer: AnswerModeOption = None,
    answer_tokens: AnswerTokensOption = 128,
) -> None:
    """Answer a question from an index, citing the sources used.

    Without --index the model answers from what it knows (a fine-tuned model, say).
    """
    from ragtune import VectorStoreIndex  # with the query engine registered
    from ragtune.llm import load_llm
    from ragtune.questions import validate_query

    if index is None:  # with an index, the retriever checks the question
        validate_query(question)
    model = load_llm(llm) if llm is not None else None  # a bad --llm fails before any work
    if index is None:
        if filter:
            raise RagtuneError("--filter needs an --index to filter")
        answer_without_index(model or load_llm(None), question, as_json)
        return
    engine = VectorStoreIndex.load(index).as_query_engine(
        similarity_top_k=top_k,
        llm=model,
        mode=mode,
        filters=filter,
        mmr=mmr,
        grounding=grounding,
        answer_mode=answer,
        answer_tokens=answer_tokens,
        **({} if min_similarity is None else {"min_similarity": min_similarity}),
    )
    if as_json:
        out.print_data(engine.query(question).to_dict())
        return
    stream_answer(engine, question)


def chat_command(
    index: IndexOption,
    top_k: TopKOption = 4,
    llm: Annotated[
        str | None,
        typer.Option(help="The model, as for ask (default: bundled SmolLM2)."),
    ] = None,
    mode: ModeOption = "hybrid",
    filter: FilterOption = None,  # noqa: A002
    history_turns: Annotated[
        int, typer.Option(min=0, max=20, help="Earlier turns put into the prompt.")
    ] = 3,
    answer_tokens: AnswerTokensOption = 128,
    grounding: GroundingOption = "strict",
    answer: AnswerModeOption = None,
) -> None:
    """Talk to an index: one question a line on stdin; follow-ups keep the subject.

    /sources lists the last answer's sources, /reset forgets the history, /exit
    (or end of input) ends with a summary.

    With stdin from a file or a pipe, each line is echoed as "> LINE" on stdout and
    turns are a blank line apart, so the transcript reads turn by turn.
    """
    import time

    from ragtune import VectorStoreIndex  # with the query engine registered
    from ragtune.llm import load_llm
    from ragtune.query.chat import ChatSession

    # A bad --llm fails before the first question; the bundled model loads when first asked.
    model = load_llm(llm) if llm is not None else None
    engine = VectorStoreIndex.load(index).as_query_engine(
        similarity_top_k=top_k,
        llm=model,
        mode=mode,
        filters=filter,
        answer_tokens=answer_tokens,
        grounding=grounding,
        answer_mode=answer,
    )
    session = ChatSession(engine, max_history_turns=history_turns)
    started = time.perf_counter()
    turns = 0
    interactive = sys.stdin.isatty()
    if interactive:
        err.print(f"Chatting with {index} ({CHAT_HELP}).")
    first_line = True
    while True:
        if interactive:
            err.print(styled("> ", "bold"), end="")
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if not interactive:
            # Nobody typed the line where the answer appears: without it, answers to a
            # piped list of questions run together with nothing to say where one starts.
            gap = "" if first_line else "\n"
            out.print(Text.assemble(gap, styled("> ", "bold"), plain(text)))
            first_line = False
        if text.startswith("/"):
            command = text.split()[0].lower()
            if command in ("/exit", "/quit"):
                break
            if command == "/reset":
                session.reset()
                err.print("(history cleared)")
            elif command == "/sources":
                if session.last_response is None:
                    err.print("(no answer yet)")
                else:
                    print_sources(session.last_response)
            else:
                err.print(f"unknown command {command}; {CHAT_HELP}")
            continue
        try:
            tokens, response = session.stream(text)
            for piece in tokens:
                out.print(piece, end="")
        except RagtuneError as error:
            err.print(f"error: {error}")
            continue
        out.print()
        print_evidence(response)
        if response.metadata.get("rewritten"):
            err.print(f"(searched for: {response.metadata['retrieval_query']})")
        turns += 1
    err.print(
        f"{turns} turn{'s' if turns != 1 else ''} in {time.perf_counter() - started:.1f} s",
    )
