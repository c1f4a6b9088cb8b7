"""Commands that query an index: ``retrieve``, ``ask`` and ``chat``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from ragtune.cli.options import (
    FilterOption,
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
    """Rank indexed passages for a question, without any LLM.

    Example: ragtune retrieve "price of the griffin kite" --index ./idx --filter site=shop.example
    """
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
    for rank, node in enumerate(nodes, 1):
        score = styled(f"{rank}. {node.score:.3f}", "bold")
        out.print(Text.assemble(score, " ", plain(str(node.metadata.get("url", "")))))
        out.print(f"   {_excerpt(node.text)}")


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
            "similar to the question (cosine; default 0.22; 0 always asks the LLM).",
        ),
    ] = None,
) -> None:
    """Answer a question from an index, citing the sources used.

    Example: ragtune ask "What is the flavor of the dark energy potion?" --index ./idx

    Without --index the model answers from what it knows (a fine-tuned model, say).
    """
    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.llm import load_llm
    from ragtune.questions import validate_query

    if index is None:  # with an index, the retriever checks the question
        validate_query(question)
    model = load_llm(llm) if llm is not None else None  # a bad --llm fails before any work
    if index is None:
        if filter:
            raise RagtuneError("--filter needs an --index to filter")
        _answer_without_index(model or load_llm(None), question, as_json)
        return
    engine = VectorStoreIndex.load(index).as_query_engine(
        similarity_top_k=top_k,
        llm=model,
        mode=mode,
        filters=filter,
        mmr=mmr,
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
    answer_tokens: Annotated[
        int, typer.Option(min=1, max=4096, help="The longest answer, in the model's tokens.")
    ] = 128,
) -> None:
    """Talk to an index: one question a line on stdin; follow-ups keep the subject.

    /sources lists the last answer's sources, /reset forgets the history, /exit
    (or end of input) ends with a summary. Example: ragtune chat --index ./idx
    """
    import time

    from ragtune.index.vector_index import VectorStoreIndex
    from ragtune.llm import load_llm
    from ragtune.query.chat import ChatSession

    model = load_llm(llm)  # a bad --llm or model fails before the first question
    engine = VectorStoreIndex.load(index).as_query_engine(
        similarity_top_k=top_k,
        llm=model,
        mode=mode,
        filters=filter,
        answer_tokens=answer_tokens,
    )
    session = ChatSession(engine, max_history_turns=history_turns)
    started = time.perf_counter()
    turns = 0
    interactive = sys.stdin.isatty()
    if interactive:
        err.print(f"Chatting with {index} ({CHAT_HELP}).")
    while True:
        if interactive:
            err.print(styled("> ", "bold"), end="")
        line = sys.stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
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
                    _print_sources(session.last_response)
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
        if response.metadata.get("rewritten"):
            err.print(f"(searched for: {response.metadata['retrieval_query']})")
        turns += 1
    err.print(
        f"{turns} turn{'s' if turns != 1 else ''} in {time.perf_counter() - started:.1f} s",
    )


def stream_answer(engine: Any, question: str) -> None:
    """Print the answer as the model writes it, then the sources it was given."""
    tokens, response = engine.stream(question)
    for piece in tokens:
        out.print(piece, end="")
    out.print()
    _print_sources(response)


def _answer_without_index(model: Any, question: str, as_json: bool) -> None:
    messages = [{"role": "user", "content": question}]
    if as_json:
        answer = model.chat(messages, max_tokens=256)
        out.print_data(
            {"answer": answer, "sources": [], "citations": [], "metadata": {"index": None}}
        )
        return
    for piece in model.stream_chat(messages, max_tokens=256):
        out.print(piece, end="")
    out.print()
    err.print(f"(no index: answered by {model.name} alone, without sources)")


def _print_sources(response: Any) -> None:
    if response.metadata.get("not_in_sources"):
        err.print(f"({response.metadata['reason']}; the LLM was not asked)")
        heading = " (closest passages, none close enough)"
    else:
        heading = " (* cited in the answer)"
    out.print(Text.assemble("\n", styled("Sources", "bold"), heading))
    cited = {citation.number for citation in response.citations}
    for number, node in enumerate(response.source_nodes, 1):
        mark = "*" if number in cited else " "
        out.print(f" {mark}[{number}] {node.metadata.get('url', '')} (score {node.score:.3f})")


def _excerpt(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
