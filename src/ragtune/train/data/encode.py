"""Records -> token ids and labels, through the model's own chat template.

A conversation is rendered turn by turn with ``apply_chat_template`` and cut into
segments: template text and user turns (label -100, no loss when ``mask_prompt``) and the
assistant replies, including the end-of-turn token that follows each reply, so the tuned
model learns to stop. Plain texts are joined with EOS and cut into full-length blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ragtune.errors import DatasetError
from ragtune.train.data.records import ChatRecord, Message, PreferencePair, TextRecord

log = logging.getLogger(__name__)

IGNORE = -100  # the label PyTorch's cross-entropy skips

# Used when a tokenizer has no chat template of its own (base models): ChatML, which
# SmolLM2 and many others use.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True, slots=True)
class Example:
    """One training sequence: ids and labels of equal length (-100 where no loss)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


@dataclass
class EncodeReport:
    """What encoding did to the dataset, for the user and the summary."""

    records: int = 0
    truncated: int = 0
    skipped: int = 0
    tokens: int = 0
    trained_tokens: int = 0


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give a tokenizer what training needs: a chat template and a padding token."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _render(tokenizer: Any, messages: Sequence[Message], generation_prompt: bool) -> str:
    if not messages:
        return ""
    chat = [{"role": m.role, "content": m.content} for m in messages]
    text = tokenizer.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=generation_prompt
    )
    return str(text)


def chat_segments(
    tokenizer: Any, messages: Sequence[Message], mask_prompt: bool = True
) -> list[tuple[str, bool]]:
    """The rendered conversation as (text, trained) pieces, in order."""
    segments: list[tuple[str, bool]] = []
    done = ""
    for turn, message in enumerate(messages):
        if message.role == "assistant":
            prompt = _render(tokenizer, messages[:turn], generation_prompt=True)
            full = _render(tokenizer, messages[: turn + 1], generation_prompt=False)
            if not (prompt.startswith(done) and full.startswith(prompt)):
                return _last_reply_segments(tokenizer, messages, mask_prompt)
            segments.append((prompt[len(done) :], not mask_prompt))
            segments.append((full[len(prompt) :], True))
            done = full
        else:
            full = _render(tokenizer, messages[: turn + 1], generation_prompt=False)
            if not full.startswith(done):
                return _last_reply_segments(tokenizer, messages, mask_prompt)
            segments.append((full[len(done) :], not mask_prompt))
            done = full
    return [(text, trained) for text, trained in segments if text]


def _last_reply_segments(
    tokenizer: Any, messages: Sequence[Message], mask_prompt: bool
) -> list[tuple[str, bool]]:
    """For templates that rewrite earlier turns (some drop old reasoning): train the last reply."""
    prompt = _render(tokenizer, messages[:-1], generation_prompt=True)
    full = _render(tokenizer, messages, generation_prompt=False)
    if not full.startswith(prompt):
        raise DatasetError(
            "the model's chat template renders a reply that does not extend its prompt"
        )
    return [(prompt, not mask_prompt), (full[len(prompt) :], True)]


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _added_special_ids(tokenizer: Any) -> list[int]:
    """What the tokenizer adds to any text by itself (BOS for Llama-style tokenizers)."""
    return list(tokenizer("", add_special_tokens=True)["input_ids"])


def encode_chat(tokenizer: Any, messages: Sequence[Message], mask_prompt: bool = True) -> Example:
    ids: list[int] = []
    labels: list[int] = []
    lead = _added_special_ids(tokenizer)
    segments = chat_segments(tokenizer, messages, mask_prompt)
    if lead and not (segments and segments[0][0].startswith(tokenizer.decode(lead))):
        ids += lead
        labels += [IGNORE] * len(lead)
    for text, trained in segments:
        piece = _ids(tokenizer, text)
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)
    eos = tokenizer.eos_token_id
    if eos is not None and eos not in [
        i for i, label in zip(ids, labels, strict=True) if label != IGNORE
    ]:
        # templates without an end-of-turn token: the reply must still end in EOS
        ids.append(eos)
        labels.append(eos)
    return Example(ids, labels)


def _fit(
    example: Example, max_length: int, overlong: str, source: str, report: EncodeReport
) -> Example | None:
    if len(example.input_ids) <= max_length:
        return example
    if overlong == "error":
        raise DatasetError(
            f"{source}: record is {len(example.input_ids)} tokens, longer than max_length "
            f"{max_length} (set overlong: truncate or skip)"
        )
    if overlong == "skip":
        report.skipped += 1
        return None
    cut = Example(example.input_ids[:max_length], example.labels[:max_length])
    if cut.trained_tokens == 0:  # the reply was cut off entirely: nothing left to learn
        report.skipped += 1
        return None
    report.truncated += 1
    return cut


def encode_records(
    tokenizer: Any,
    records: Iterable[ChatRecord | TextRecord],
    max_length: int,
    mask_prompt: bool = True,
    overlong: str = "truncate",
) -> tuple[list[Example], EncodeReport]:
    """Chat records become one example each; texts are joined and cut into blocks."""
    report = EncodeReport()
    examples: list[Example] = []
    text_stream: list[int] = []
    for record in records:
        report.records += 1
        if isinstance(record, TextRecord):
            text_stream += _ids(tokenizer, record.text)
            if tokenizer.eos_token_id is not None:
                text_stream.append(tokenizer.eos_token_id)
            continue
        fitted = _fit(
            encode_chat(tokenizer, record.messages, mask_prompt),
            max_length,
            overlong,
            record.source,
            report,
        )
        if fitted is not None:
            examples.append(fitted)
    # Texts are continued pre-training: every token is trained, blocks are full length.
    for start in range(0, len(text_stream), max_length):
        block = text_stream[start : start + max_length]
        if len(block) > 1:
            examples.append(Example(block, list(block)))
    for example in examples:
        report.tokens += len(example.input_ids)
        report.trained_tokens += example.trained_tokens
    if report.truncated or report.skipped:
        log.warning(
            "%d record(s) longer than max_length %d were truncated, %d skipped",
            report.truncated,
            max_length,
            report.skipped,
        )
    return examples, report


def pack(examples: Sequence[Example], max_length: int) -> list[Example]:
    """Concatenate examples into sequences of up to max_length tokens, in order.

    Attention crosses the joins (as TRL's classic packing does); labels keep each example's
    mask, and every example ends in EOS, so the model still learns where replies stop.
    """
    packed: list[Example] = []
    ids: list[int] = []
    labels: list[int] = []
    for example in examples:
        if ids and len(ids) + len(example.input_ids) > max_length:
            packed.append(Example(ids, labels))
            ids, labels = [], []
        ids = ids + example.input_ids
        labels = labels + example.labels
    if ids:
        packed.append(Example(ids, labels))
    return packed


@dataclass(frozen=True, slots=True)
class PairExample:
    """A preference pair as two sequences sharing a prompt; labels mark the replies only."""

    chosen: Example
    rejected: Example


def encode_pairs(
    tokenizer: Any,
    pairs: Iterable[PreferencePair],
    max_length: int,
    overlong: str = "truncate",
) -> tuple[list[PairExample], EncodeReport]:
    report = EncodeReport()
    examples: list[PairExample] = []
    for pair in pairs:
        report.records += 1
        encoded = []
        for reply in (pair.chosen, pair.rejected):
            messages = (*pair.prompt, Message("assistant", reply))
            encoded.append(
                _fit(
                    encode_chat(tokenizer, messages, True),
                    max_length,
                    overlong,
                    pair.source,
                    report,
                )
            )
        chosen, rejected = encoded
        if chosen is None or rejected is None:
            continue
        examples.append(PairExample(chosen, rejected))
        report.tokens += len(chosen.input_ids) + len(rejected.input_ids)
        report.trained_tokens += chosen.trained_tokens + rejected.trained_tokens
    return examples, report
