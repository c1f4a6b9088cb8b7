"""Read fine-tuning and preference datasets into plain records, with errors that name FILE:LINE.

Supervised fine-tuning (``load_sft_records``) reads four formats, auto-detected from the first
record (every later record must have the same format):

- ``alpaca``:   ``{"instruction": "Add 2+2", "input": "", "output": "4", "system": "...",
  "history": [["hi", "hello"]]}`` (``input``, ``system`` and ``history`` optional)
- ``sharegpt``: ``{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt",
  "value": "Hello"}], "system": "..."}``
- ``messages``: ``{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant",
  "content": [{"type": "text", "text": "Hello"}]}]}`` (OpenAI's fine-tuning JSONL)
- ``text``:     a ``.txt``/``.md`` file, a directory of them, or records ``{"text": "..."}``

Preference pairs (``load_preference_pairs``) for DPO come in three shapes:

- TRL:      ``{"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."}``, each field also a
  list of ``{"role", "content"}`` messages; without ``prompt`` the shared prefix of the
  ``chosen`` and ``rejected`` conversations is the prompt
- ShareGPT: ``{"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt",
  "value": "Hello!"}, "rejected": {"from": "gpt", "value": "Go away."}}``
- Alpaca:   ``{"instruction": "Greet me", "input": "", "chosen": "Hello!", "rejected": "No."}``

A file whose first non-blank character is ``[`` is one JSON array; one starting with ``{`` is
JSONL (one object per line, blank lines skipped). Conventions:

- NUL characters are removed from every text: tokenizers choke on them and they carry no meaning.
- Texts are otherwise kept verbatim (no stripping); whitespace-only ``text`` records and files
  are skipped, whitespace-only instructions and replies are errors.
- Limits, to refuse rather than run out of memory: 4 GiB per file, 16 MiB per JSONL line.
- Hidden files and directories (``.git``, editor swap files) inside a text directory are skipped.
- Every problem raises ``DatasetError`` with a one-line message; nothing partial is returned.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any, Literal

from ragtune.errors import DatasetError

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRecord:
    """A conversation ending with the assistant reply to train on."""

    messages: tuple[Message, ...]
    source: str  # "FILE:LINE", so later stages (tokenizing, length checks) can name the record


@dataclass(frozen=True, slots=True)
class TextRecord:
    """Raw text for continued pre-training; every token carries loss."""

    text: str
    source: str
    # A piece of a file too big to hold at once (``iter_text_records``), not its end: the
    # next record continues the same document.
    continued: bool = False


@dataclass(frozen=True, slots=True)
class PreferencePair:
    """A prompt and two assistant replies to it, the preferred one first."""

    prompt: tuple[Message, ...]
    chosen: str
    rejected: str
    source: str


FORMATS = ("alpaca", "sharegpt", "messages", "text")
TEXT_SUFFIXES = (".txt", ".md")
MAX_FILE_BYTES = 4 * 1024**3
MAX_LINE_BYTES = 16 * 1024 * 1024
# Pretraining reads text files in pieces of this size (iter_text_records).
STREAM_BYTES = 64 * 1024 * 1024

# strict=False accepts raw tabs and other control characters inside strings, which hand-written
# JSONL often has; JSON's structure is still checked strictly.
_DECODER = json.JSONDecoder(strict=False)
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_BOM = b"\xef\xbb\xbf"
_KEYS_SHOWN = 8

_SHAREGPT_ROLES: dict[str, Role] = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}
_MESSAGE_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",  # OpenAI's newer name for the system role
    "user": "user",
    "assistant": "assistant",
}

Record = ChatRecord | TextRecord
_Turn = tuple[str, Message]  # a message and how to name it in an error ("ShareGPT turn 2")


class _Bad(Exception):
    """A problem with one record; the loader prefixes FILE:LINE and raises DatasetError."""


# ---------------------------------------------------------------------------- public API


def detect_format(first_record: dict[str, Any]) -> str:
    """The SFT format of a record (one of FORMATS), judged by its keys.

    Raises DatasetError when none fits; the loaders give the same message with FILE:LINE.
    """
    found = _detect_sft(first_record)
    if found is None:
        raise DatasetError(_unknown_sft(first_record))
    return found


def load_sft_records(path: Path, format: str = "auto") -> tuple[str, list[Record]]:
    """Read a fine-tuning dataset: (the format, read or forced, and its records in file order)."""
    path = Path(path)
    name = _display(path)
    wanted = _check_format_name(name, format)
    mode = _stat(path, name).st_mode
    if stat.S_ISDIR(mode) or path.suffix.lower() in TEXT_SUFFIXES or _forced_plain(path, wanted):
        if wanted not in ("auto", "text"):
            raise DatasetError(
                f"{name}: plain text (a .txt or .md file, or a directory) is format text, "
                f"not {wanted}"
            )
        return "text", _load_text_files(path, name)
    found, records = _load_json_records(path, name, wanted)
    if not records:
        raise DatasetError(f"{name}: no training records")
    return found, records


def iter_text_records(path: Path) -> Iterator[TextRecord]:
    """Stream the texts of a plain-text dataset (a file, a directory of them, or JSON(L)
    records ``{"text"}``) one at a time, for corpora larger than memory (pretraining).

    The same checks and errors as ``load_sft_records(path, "text")``, raised when the
    offending file or line is reached; a dataset with no text at all is an error at the end.
    """
    path = Path(path)
    name = _display(path)
    mode = _stat(path, name).st_mode
    found = False
    if stat.S_ISDIR(mode) or path.suffix.lower() in TEXT_SUFFIXES or _forced_plain(path, "text"):
        for file in _text_files(path, name) if path.is_dir() else [path]:
            for piece in _stream_text_file(file, _display(file)):
                found = found or bool(piece.text.strip())
                yield piece
    else:
        for line, value in _iter_json_records(path, name):
            source = f"{name}:{line}"
            try:
                record = _as_object(value)
                if "text" not in record:
                    raise _Bad(f'record has no "text" ({_keys(record)}); a corpus is text records')
                item = _parse_text(record, source)
            except _Bad as problem:
                raise DatasetError(f"{source}: {problem}") from None
            if isinstance(item, TextRecord):
                found = True
                yield item
    if not found:
        raise DatasetError(f"{name}: no text to train on")


def _stream_text_file(file: Path, name: str) -> Iterator[TextRecord]:
    """A text file as one record, or, past ``STREAM_BYTES``, as pieces of about that size
    cut after a line break (``continued`` on all but the last), decoded incrementally so a
    file of any size is never held whole."""
    info = _stat(file, name)
    if not stat.S_ISREG(info.st_mode):
        raise DatasetError(f"{name}: not a regular file")
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset, line, pending, opened = 0, 1, "", False
    try:
        handle = file.open("rb")
    except OSError as error:
        raise DatasetError(f"{name}: cannot read ({error.strerror or error})") from None
    with handle:
        raw = handle.read(STREAM_BYTES)
        while True:
            following = handle.read(STREAM_BYTES) if raw else b""
            last = not following  # read ahead, so the last piece knows it ends the file
            try:
                text = pending + decoder.decode(raw, final=last)
            except UnicodeDecodeError as error:
                raise DatasetError(_not_utf8(name, raw, error, offset)) from None
            if offset == 0:
                text = text.removeprefix("\ufeff")
            offset += len(raw)
            cut = len(text) if last else text.rfind("\n") + 1
            if cut == 0:  # no line break in a whole block: cut it anyway
                cut = len(text)
            piece, pending = text[:cut].replace("\x00", ""), text[cut:]
            if piece.strip() or (opened and last):  # the last piece ends the document
                opened = True
                yield TextRecord(piece, f"{name}:{line}", continued=not last)
            line += piece.count("\n")
            if last:
                return
            raw = following


def load_preference_pairs(path: Path) -> list[PreferencePair]:
    """Read DPO preference pairs (TRL, ShareGPT or Alpaca style) in file order."""
    path = Path(path)
    name = _display(path)
    mode = _stat(path, name).st_mode
    if stat.S_ISDIR(mode) or path.suffix.lower() in TEXT_SUFFIXES:
        raise DatasetError(f"{name}: preference pairs must be a JSON or JSONL file")
    pairs: list[PreferencePair] = []
    expected: str | None = None
    first_line = 0
    for line, value in _iter_json_records(path, name):
        source = f"{name}:{line}"
        try:
            record = _as_object(value)
            kind = _detect_pair(record)
            if expected is None:
                if kind is None:
                    raise _Bad(_unknown_pair(record))
                expected, first_line = kind, line
            elif kind not in (None, expected):
                raise _Bad(_mixed(kind, expected, first_line))
            prompt, chosen, rejected = _PAIR_PARSERS[expected](record)
            if chosen.strip() == rejected.strip():
                raise _Bad('"chosen" and "rejected" are the same; the pair teaches nothing')
        except _Bad as problem:
            raise DatasetError(f"{source}: {problem}") from None
        pairs.append(PreferencePair(prompt, chosen, rejected, source))
    if not pairs:
        raise DatasetError(f"{name}: no training records")
    return pairs


# ---------------------------------------------------------------------------- files


def _display(path: Path) -> str:
    """The path as the user gave it, escaped if it holds newlines or other control characters."""
    text = str(path)
    return text if text.isprintable() else ascii(text)[1:-1]


def _check_format_name(name: str, format: str) -> str:
    wanted = format.lower() if isinstance(format, str) else ""
    if wanted != "auto" and wanted not in FORMATS:
        raise DatasetError(
            f"{name}: unknown dataset format {_quote(str(format))}; "
            f"use auto, {', '.join(FORMATS[:-1])} or {FORMATS[-1]}"
        )
    return wanted


def _stat(path: Path, name: str) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError:
        raise DatasetError(f"{name}: no such file or directory") from None
    except OSError as error:
        raise DatasetError(f"{name}: cannot read ({error.strerror or error})") from None


def _check_file(path: Path, name: str) -> None:
    info = _stat(path, name)
    if not stat.S_ISREG(info.st_mode):
        raise DatasetError(f"{name}: not a regular file")
    if info.st_size > MAX_FILE_BYTES:
        raise DatasetError(
            f"{name}: {info.st_size / 1024**3:.1f} GiB is over the "
            f"{MAX_FILE_BYTES / 1024**3:g} GiB limit for a dataset file; split it"
        )


def _read_bytes(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DatasetError(f"{name}: cannot read ({error.strerror or error})") from None


def _decode(raw: bytes, name: str, offset: int) -> str:
    """UTF-8 text of raw, which starts at byte `offset` of the file (for the error)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(_not_utf8(name, raw, error, offset)) from None


def _not_utf8(name: str, raw: bytes, error: UnicodeDecodeError, offset: int) -> str:
    return (
        f"{name}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {offset + error.start})"
    )


def _first_byte(path: Path, name: str) -> bytes:
    """The first byte that is not JSON whitespace (or a UTF-8 BOM); b"" for a blank file."""
    try:
        with path.open("rb") as file:
            chunk = file.read(65536)
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
            while chunk:
                rest = chunk.lstrip(b" \t\r\n")
                if rest:
                    return rest[:1]
                chunk = file.read(65536)
    except OSError as error:
        raise DatasetError(f"{name}: cannot read ({error.strerror or error})") from None
    return b""


def _forced_plain(path: Path, wanted: str) -> bool:
    """--format text on a file that is not JSON (a .log, a README) reads it as plain text."""
    if wanted != "text" or not path.is_file():
        return False
    _check_file(path, _display(path))
    return _first_byte(path, _display(path)) not in (b"[", b"{", b"")


def _load_text_files(path: Path, name: str) -> list[Record]:
    files = _text_files(path, name) if path.is_dir() else [path]
    records: list[Record] = []
    for file in files:
        file_name = _display(file)
        _check_file(file, file_name)
        text = _decode(_read_bytes(file, file_name), file_name, 0)
        text = text.removeprefix("\ufeff").replace("\x00", "")
        if text.strip():
            records.append(TextRecord(text, f"{file_name}:1"))
    if not records:
        raise DatasetError(f"{name}: no training records")
    return records


def _text_files(directory: Path, name: str) -> list[Path]:
    files = sorted(
        file
        for file in directory.rglob("*")
        if file.suffix.lower() in TEXT_SUFFIXES
        and not any(part.startswith(".") for part in file.relative_to(directory).parts)
        and file.is_file()
    )
    if not files:
        raise DatasetError(f"{name}: no .txt or .md files in this directory")
    return files


# ---------------------------------------------------------------------------- JSON records


def _iter_json_records(path: Path, name: str) -> Iterator[tuple[int, Any]]:
    """(line where the record starts, parsed value) for each record of a JSON array or JSONL."""
    _check_file(path, name)
    first = _first_byte(path, name)
    if first == b"[":
        yield from _iter_array(path, name)
    elif first == b"{":
        yield from _iter_jsonl(path, name)
    elif first:
        raise DatasetError(_not_json(path, name))


def _not_json(path: Path, name: str) -> str:
    with path.open("rb") as file:
        head = file.read(4096)
    try:
        # A binary file (gzip, UTF-16, an image) is better described by its bad byte.
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as error:
        return _not_utf8(name, head, error, 0)
    start = text.removeprefix("\ufeff").lstrip(" \t\r\n")[:1]
    return (
        f"{name}: not a JSON array or JSONL file (it starts with {_quote(start)}); "
        "plain text must be a .txt or .md file or read with format text"
    )


def _iter_jsonl(path: Path, name: str) -> Iterator[tuple[int, Any]]:
    offset = 0
    try:
        file = path.open("rb")
    except OSError as error:
        raise DatasetError(f"{name}: cannot read ({error.strerror or error})") from None
    with file:
        for line_number in count(1):
            # The limit keeps one runaway line (a whole dump without newlines) from being read
            # into memory before it is refused.
            raw = file.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DatasetError(
                    f"{name}:{line_number}: line is longer than the "
                    f"{MAX_LINE_BYTES // 1024**2} MiB limit for one JSONL record"
                )
            # Without its line ending, so JSON errors report a column on this line.
            text = _decode(raw, name, offset).rstrip("\r\n")
            if offset == 0:
                text = text.removeprefix("\ufeff")
            offset += len(raw)
            if text.strip():
                yield line_number, _parse_line(text, name, line_number)


def _parse_line(text: str, name: str, line_number: int) -> Any:
    try:
        return _DECODER.decode(text)
    except RecursionError:  # the parser recurses once per level of nesting
        raise DatasetError(f"{name}:{line_number}: JSON nested too deeply to read") from None
    except json.JSONDecodeError as error:
        # JSON ending mid-object usually means a pretty-printed object, which JSONL cannot hold.
        hint = (
            "; JSONL needs one complete record per line" if error.pos >= len(text.rstrip()) else ""
        )
        raise DatasetError(
            f"{name}:{line_number}: not valid JSON ({error.msg}, column {error.colno}){hint}"
        ) from None


def _iter_array(path: Path, name: str) -> Iterator[tuple[int, Any]]:
    raw = _read_bytes(path, name)
    text = _decode(raw, name, 0)
    del raw  # the text is all that is needed; don't hold the file twice
    yield from _scan_array(text, name)


def _scan_array(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """Decode the array element by element so each record's starting line is known.

    raw_decode parses in C from an offset; counting newlines between elements is linear, so a
    large file costs about what json.loads would.
    """
    position = _skip_space(text, 1 if text.startswith("\ufeff") else 0) + 1  # past "["
    position = _skip_space(text, position)
    line, counted = 1, 0
    if text.startswith("]", position):
        position += 1
    else:
        while True:
            line += text.count("\n", counted, position)
            counted = position
            try:
                value, end = _DECODER.raw_decode(text, position)
            except RecursionError:  # the parser recurses once per level of nesting
                raise DatasetError(f"{name}:{line}: JSON nested too deeply to read") from None
            except json.JSONDecodeError as error:
                raise _json_error(name, error) from None
            yield line, value
            position = _skip_space(text, end)
            if text.startswith(",", position):
                position = _skip_space(text, position + 1)
            elif text.startswith("]", position):
                position += 1
                break
            else:
                problem = json.JSONDecodeError("Expecting ',' delimiter", text, position)
                raise _json_error(name, problem)
    position = _skip_space(text, position)
    if position < len(text):
        raise _json_error(name, json.JSONDecodeError("Extra data", text, position))


def _skip_space(text: str, position: int) -> int:
    match = _JSON_SPACE.match(text, position)
    return match.end() if match else position


def _json_error(name: str, error: json.JSONDecodeError) -> DatasetError:
    return DatasetError(
        f"{name}:{error.lineno}: not valid JSON ({error.msg}, column {error.colno})"
    )


# ---------------------------------------------------------------------------- SFT formats


def _load_json_records(path: Path, name: str, wanted: str) -> tuple[str, list[Record]]:
    records: list[Record] = []
    found: str | None = None if wanted == "auto" else wanted
    first_line = 0
    for line, value in _iter_json_records(path, name):
        source = f"{name}:{line}"
        try:
            record = _as_object(value)
            kind = _detect_sft(record)
            if found is None:
                if "chosen" in record and "rejected" in record:
                    raise _Bad(
                        'this is a preference-pair file ("chosen", "rejected"); '
                        "train on it with ragtune align"
                    )
                if kind is None:
                    raise _Bad(_unknown_sft(record))
                found, first_line = kind, line
            elif wanted == "auto" and kind not in (None, found):
                raise _Bad(_mixed(kind, found, first_line))
            item = _SFT_PARSERS[found](record, source)
        except _Bad as problem:
            raise DatasetError(f"{source}: {problem}") from None
        if item is not None:
            records.append(item)
    return found or wanted, records


def _detect_sft(record: dict[str, Any]) -> str | None:
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record or "output" in record:
        return "alpaca"
    if "text" in record:
        return "text"
    return None


def _unknown_sft(record: dict[str, Any]) -> str:
    return (
        f"record matches no dataset format ({_keys(record)}); expected alpaca "
        '("instruction", "output"), sharegpt ("conversations"), messages ("messages") '
        'or text ("text")'
    )


def _mixed(kind: str, expected: str, first_line: int) -> str:
    return (
        f"record is {kind} but the file is {expected} (from its first record, line "
        f"{first_line}); use one format per file"
    )


def _parse_alpaca(record: dict[str, Any], source: str) -> Record:
    prompt = _alpaca_prompt(record)
    output = _required(record, "output", "Alpaca record")
    return ChatRecord((*prompt, Message("assistant", output)), source)


def _parse_sharegpt(record: dict[str, Any], source: str) -> Record:
    turns = _sharegpt_turns(record)
    return ChatRecord(_check_chat(turns, "the conversation", "assistant"), source)


def _parse_messages(record: dict[str, Any], source: str) -> Record:
    turns = _message_list(record.get("messages"), '"messages"', "message")
    return ChatRecord(_check_chat(turns, "the conversation", "assistant"), source)


def _parse_text(record: dict[str, Any], source: str) -> Record | None:
    text = _string(record, "text", "text record")
    return TextRecord(text, source) if text.strip() else None


_SFT_PARSERS: dict[str, Callable[[dict[str, Any], str], Record | None]] = {
    "alpaca": _parse_alpaca,
    "sharegpt": _parse_sharegpt,
    "messages": _parse_messages,
    "text": _parse_text,
}


def _alpaca_prompt(record: dict[str, Any]) -> tuple[Message, ...]:
    """[system?, history..., user] of an Alpaca record; input is appended to the instruction."""
    owner = "Alpaca record"
    instruction = _required(record, "instruction", owner)
    extra = _optional(record, "input", owner)
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    system = _optional(record, "system", owner)
    prefix = [Message("system", system)] if system.strip() else []
    return (*prefix, *_alpaca_history(record.get("history")), Message("user", user))


def _alpaca_history(history: Any) -> list[Message]:
    if history is None:
        return []
    if not isinstance(history, list):
        raise _Bad(f'Alpaca record\'s "history" is {_kind(history)}, not a list of pairs')
    messages: list[Message] = []
    for number, pair in enumerate(history, 1):
        what = f'Alpaca record\'s "history" item {number}'
        if not isinstance(pair, list) or len(pair) != 2:
            raise _Bad(f"{what} is not a [user, assistant] pair")
        messages.append(Message("user", _text(pair[0], f"{what}'s user text")))
        messages.append(Message("assistant", _text(pair[1], f"{what}'s assistant text")))
    return messages


def _sharegpt_turns(record: dict[str, Any]) -> list[_Turn]:
    conversation = record.get("conversations")
    if not isinstance(conversation, list):
        raise _Bad(f'ShareGPT record\'s "conversations" is {_kind(conversation)}, not a list')
    if not conversation:
        raise _Bad('ShareGPT record\'s "conversations" is empty')
    system = _optional(record, "system", "ShareGPT record")
    turns: list[_Turn] = []
    if system.strip():
        turns.append(('ShareGPT record\'s "system"', Message("system", system)))
    for number, turn in enumerate(conversation, 1):
        label = f"ShareGPT turn {number}"
        turns.append((label, _sharegpt_message(turn, label)))
    return turns


def _sharegpt_message(turn: Any, label: str) -> Message:
    if not isinstance(turn, dict):
        raise _Bad(f"{label} is {_kind(turn)}, not an object")
    speaker = _string(turn, "from", label)
    role = _SHAREGPT_ROLES.get(speaker.strip().lower())
    if role is None:
        raise _Bad(f"{label} has unknown role {_quote(speaker)}; use human, gpt or system")
    return Message(role, _string(turn, "value", label))


def _message_list(items: Any, what: str, label: str) -> list[_Turn]:
    """OpenAI-style messages; `label` names one ("message 3") in errors."""
    if not isinstance(items, list):
        raise _Bad(f"{what} is {_kind(items)}, not a list of messages")
    if not items:
        raise _Bad(f"{what} is empty")
    return [
        (f"{label} {n}", _openai_message(item, f"{label} {n}")) for n, item in enumerate(items, 1)
    ]


def _openai_message(item: Any, label: str) -> Message:
    if not isinstance(item, dict):
        raise _Bad(f"{label} is {_kind(item)}, not an object")
    name = _string(item, "role", label).strip().lower()
    if name in ("tool", "function"):
        raise _Bad(f"{label} has role {_quote(name)}: tool messages are not supported yet")
    role = _MESSAGE_ROLES.get(name)
    if role is None:
        raise _Bad(f"{label} has unknown role {_quote(name)}; use system, user or assistant")
    if item.get("content") is None and (item.get("tool_calls") or item.get("function_call")):
        raise _Bad(f"{label} is a tool call: tool messages are not supported yet")
    if "content" not in item:
        raise _Bad(f'{label} has no "content"')
    return Message(role, _content(item["content"], label))


def _content(content: Any, label: str) -> str:
    """A string, or OpenAI's list of parts; only text parts, concatenated as they are."""
    if not isinstance(content, list):
        return _text(content, f'{label}\'s "content"')
    texts: list[str] = []
    for number, part in enumerate(content, 1):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind != "text":
            shown = _quote(kind) if isinstance(kind, str) else _kind(part)
            raise _Bad(f"{label} content part {number} is {shown}; only text parts are supported")
        texts.append(_string(part, "text", f"{label} content part {number}"))
    return "".join(texts)


def _check_chat(turns: list[_Turn], what: str, last: Role) -> tuple[Message, ...]:
    """System messages first (chat templates render only a leading one), non-empty replies,
    and the right final role: an assistant reply to learn, or a user turn to be answered."""
    started = False
    for label, message in turns:
        if message.role != "system":
            started = True
        elif started:
            raise _Bad(
                f"{label} is a system message after the conversation started; "
                "system messages must come first"
            )
        if message.role == "assistant" and not message.content.strip():
            raise _Bad(f"{label} is an empty assistant reply")
    end = turns[-1][1].role
    if end != last:
        goal = "an assistant reply to learn" if last == "assistant" else "a user message"
        raise _Bad(f"{what} ends with {_a(end)} message; it must end with {goal}")
    return tuple(message for _, message in turns)


# ---------------------------------------------------------------------------- preference pairs

_Pair = tuple[tuple[Message, ...], str, str]


def _detect_pair(record: dict[str, Any]) -> str | None:
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record:
        return "alpaca"
    if "prompt" in record or "chosen" in record:
        return "trl"
    return None


def _unknown_pair(record: dict[str, Any]) -> str:
    return (
        f"record matches no preference-pair format ({_keys(record)}); expected TRL "
        '("prompt", "chosen", "rejected"), ShareGPT ("conversations", "chosen", "rejected") '
        'or Alpaca ("instruction", "chosen", "rejected")'
    )


def _trl_pair(record: dict[str, Any]) -> _Pair:
    chosen_prefix, chosen = _trl_reply(record, "chosen")
    rejected_prefix, rejected = _trl_reply(record, "rejected")
    if [m for _, m in chosen_prefix] != [m for _, m in rejected_prefix]:
        raise _Bad(
            '"chosen" and "rejected" differ before their last message; '
            "only the final assistant reply may differ"
        )
    if "prompt" in record:
        prompt = _trl_prompt(record["prompt"]) + chosen_prefix
    elif chosen_prefix:  # TRL's implicit prompt: the conversation the two replies share
        prompt = chosen_prefix
    else:
        raise _Bad('TRL record has no "prompt"')
    return _check_chat(prompt, "the prompt", "user"), chosen, rejected


def _trl_prompt(prompt: Any) -> list[_Turn]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise _Bad('"prompt" is empty')
        return [('"prompt"', Message("user", prompt.replace("\x00", "")))]
    return _message_list(prompt, '"prompt"', '"prompt" message')


def _trl_reply(record: dict[str, Any], key: str) -> tuple[list[_Turn], str]:
    """(messages before the reply, the reply) of "chosen" or "rejected"."""
    if key not in record:
        raise _Bad(f'record has no "{key}"')
    value = record[key]
    if isinstance(value, str):
        return [], _required(record, key, "record")
    if not isinstance(value, list):
        raise _Bad(f'"{key}" is {_kind(value)}, not a string or a list of messages')
    turns = _message_list(value, f'"{key}"', f'"{key}" message')
    label, reply = turns[-1]
    if reply.role != "assistant":
        raise _Bad(f'"{key}" ends with {_a(reply.role)} message, not the assistant reply')
    if not reply.content.strip():
        raise _Bad(f"{label} is an empty assistant reply")
    return turns[:-1], reply.content


def _sharegpt_pair(record: dict[str, Any]) -> _Pair:
    prompt = _check_chat(_sharegpt_turns(record), "the conversation", "user")
    return prompt, _sharegpt_reply(record, "chosen"), _sharegpt_reply(record, "rejected")


def _sharegpt_reply(record: dict[str, Any], key: str) -> str:
    if key not in record:
        raise _Bad(f'ShareGPT record has no "{key}"')
    value = record[key]
    if isinstance(value, str):
        return _required(record, key, "ShareGPT record")
    message = _sharegpt_message(value, f'ShareGPT "{key}"')
    if message.role != "assistant":
        raise _Bad(f'ShareGPT "{key}" is {_a(message.role)} turn; it must be a gpt reply')
    if not message.content.strip():
        raise _Bad(f'ShareGPT "{key}" is an empty reply')
    return message.content


def _alpaca_pair(record: dict[str, Any]) -> _Pair:
    prompt = _alpaca_prompt(record)
    chosen = _required(record, "chosen", "Alpaca record")
    return prompt, chosen, _required(record, "rejected", "Alpaca record")


_PAIR_PARSERS: dict[str, Callable[[dict[str, Any]], _Pair]] = {
    "trl": _trl_pair,
    "sharegpt": _sharegpt_pair,
    "alpaca": _alpaca_pair,
}


# ---------------------------------------------------------------------------- field helpers


def _as_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"record is {_kind(value)}, not a JSON object")
    return value


def _string(record: dict[str, Any], key: str, owner: str) -> str:
    """A field that must be present and a string (possibly empty)."""
    if key not in record:
        raise _Bad(f'{owner} has no "{key}"')
    return _text(record[key], f'{owner}\'s "{key}"')


def _required(record: dict[str, Any], key: str, owner: str) -> str:
    """A field that must be a string with more than whitespace."""
    text = _string(record, key, owner)
    if not text.strip():
        raise _Bad(f'{owner}\'s "{key}" is empty')
    return text


def _optional(record: dict[str, Any], key: str, owner: str) -> str:
    """A string field that may be missing or null (read as "")."""
    value = record.get(key)
    return "" if value is None else _text(value, f'{owner}\'s "{key}"')


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{what} is {_kind(value)}, not a string")
    return value.replace("\x00", "")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _a(role: str) -> str:
    return f"an {role}" if role == "assistant" else f"a {role}"


def _quote(value: str, limit: int = 40) -> str:
    """A user-supplied string for an error message: quoted, escaped onto one line, shortened."""
    return json.dumps(value if len(value) <= limit else value[:limit] + "...")


def _keys(record: dict[str, Any]) -> str:
    if not record:
        return "an empty object"
    shown = ", ".join(_quote(key, 30) for key in list(record)[:_KEYS_SHOWN])
    more = len(record) - _KEYS_SHOWN
    return f"keys {shown}" + (f" and {more} more" if more > 0 else "")
