"""Prompt construction: numbered sources packed into the model's window."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ragtune.documents import NodeWithScore
from ragtune.llm.base import ChatMessage

SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer the question using only the numbered sources. "
    "Answer in one short sentence and cite the source number like [1]. "
    "If the sources do not contain the answer, say that you do not know."
)
# Room for the chat template's own tokens, which the plain count does not see.
TEMPLATE_MARGIN = 48
# The blank line that joins one source block to the next.
SEPARATOR_TOKENS = 2


@dataclass
class PackedPrompt:
    messages: list[ChatMessage]
    sources: list[NodeWithScore]
    prompt_tokens: int


def format_source(number: int, node: NodeWithScore) -> str:
    header = node.metadata.get("header") or node.metadata.get("title") or ""
    lead = f"[{number}] {header}\n" if header else f"[{number}]\n"
    return lead + node.text.strip()


def pack_prompt(
    question: str,
    nodes: list[NodeWithScore],
    count_tokens: Callable[[str], int],
    context_window: int,
    answer_tokens: int,
    system_prompt: str = SYSTEM_PROMPT,
) -> PackedPrompt:
    """Fit as many of the best sources as the window allows after the fixed parts."""
    fixed = count_tokens(system_prompt) + count_tokens(_user_message([], question))
    budget = context_window - answer_tokens - fixed - TEMPLATE_MARGIN
    chosen: list[NodeWithScore] = []
    blocks: list[str] = []
    used = 0
    for node in nodes:
        block = format_source(len(chosen) + 1, node)
        size = count_tokens(block) + SEPARATOR_TOKENS
        if used + size > budget:
            continue  # a smaller, lower-ranked source may still fit
        chosen.append(node)
        blocks.append(block)
        used += size
    messages: list[ChatMessage] = [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": _user_message(blocks, question)},
    ]
    return PackedPrompt(messages=messages, sources=chosen, prompt_tokens=fixed + used)


def _user_message(blocks: list[str], question: str) -> str:
    sources = "\n\n".join(blocks)
    return f"Sources:\n{sources}\n\nQuestion: {question}\nAnswer:"
