"""The dataset reader of ragtune finetune / align: every format, and precise one-line errors."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ragtune.errors import DatasetError
from ragtune.train.data import records as records_module
from ragtune.train.data.records import (
    FORMATS,
    ChatRecord,
    Message,
    PreferencePair,
    Role,
    TextRecord,
    detect_format,
    load_preference_pairs,
    load_sft_records,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ALPACA_DEMO = SHARED_DATA / "sft" / "alpaca_en_demo.json"
SEED_TASKS = SHARED_DATA / "sft" / "alpaca_seed_tasks.jsonl"
DPO_DEMO = SHARED_DATA / "preference" / "dpo_en_demo.json"
needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"the shared data folder {SHARED_DATA} is absent"
)

SYSTEM: Role = "system"
USER: Role = "user"
ASSISTANT: Role = "assistant"


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def dump(records: list[Any], container: str) -> str:
    """JSONL puts record i on line i + 1; the array form puts it on line i + 2."""
    lines = [json.dumps(record) for record in records]
    if container == "jsonl":
        return "\n".join(lines) + "\n"
    return "[\n" + ",\n".join(lines) + "\n]\n"


def line_of(container: str, index: int) -> int:
    return index + 1 if container == "jsonl" else index + 2


def error_of(call: Callable[[], object]) -> str:
    with pytest.raises(DatasetError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture(params=["jsonl", "array"])
def container(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def dataset(tmp_path: Path, container: str, records: list[Any]) -> Path:
    suffix = ".jsonl" if container == "jsonl" else ".json"
    return write(tmp_path / f"data{suffix}", dump(records, container))


# ---------------------------------------------------------------------------- formats


def test_alpaca(tmp_path: Path, container: str) -> None:
    path = dataset(
        tmp_path,
        container,
        [
            {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
            {"instruction": "Say hi.", "input": "", "output": "Hi!"},
            {
                "instruction": "And now?",
                "output": "Bye.",
                "system": "Be brief.",
                "history": [["Hello", "Hello there."], ["How are you?", "Fine."]],
            },
        ],
    )
    found, records = load_sft_records(path)
    assert found == "alpaca"
    assert records == [
        ChatRecord(
            (Message(USER, "Add the numbers.\n\n2 and 3"), Message(ASSISTANT, "5")),
            f"{path}:{line_of(container, 0)}",
        ),
        ChatRecord(
            (Message(USER, "Say hi."), Message(ASSISTANT, "Hi!")), f"{path}:{line_of(container, 1)}"
        ),
        ChatRecord(
            (
                Message(SYSTEM, "Be brief."),
                Message(USER, "Hello"),
                Message(ASSISTANT, "Hello there."),
                Message(USER, "How are you?"),
                Message(ASSISTANT, "Fine."),
                Message(USER, "And now?"),
                Message(ASSISTANT, "Bye."),
            ),
            f"{path}:{line_of(container, 2)}",
        ),
    ]


def test_sharegpt(tmp_path: Path, container: str) -> None:
    path = dataset(
        tmp_path,
        container,
        [
            {
                "conversations": [
                    {"from": "human", "value": "Hi"},
                    {"from": "gpt", "value": "Hello"},
                    {"from": "User", "value": "Again?"},
                    {"from": "MODEL", "value": "Sure."},
                ],
                "system": "Be kind.",
            },
            {
                "conversations": [
                    {"from": "system", "value": "Be terse."},
                    {"from": "human", "value": "Q"},
                    {"from": "assistant", "value": "A"},
                ]
            },
        ],
    )
    found, records = load_sft_records(path)
    assert found == "sharegpt"
    assert [record.messages for record in records if isinstance(record, ChatRecord)] == [
        (
            Message(SYSTEM, "Be kind."),
            Message(USER, "Hi"),
            Message(ASSISTANT, "Hello"),
            Message(USER, "Again?"),
            Message(ASSISTANT, "Sure."),
        ),
        (Message(SYSTEM, "Be terse."), Message(USER, "Q"), Message(ASSISTANT, "A")),
    ]
    assert records[1].source == f"{path}:{line_of(container, 1)}"


def test_openai_messages(tmp_path: Path, container: str) -> None:
    path = dataset(
        tmp_path,
        container,
        [
            {
                "messages": [
                    {"role": "developer", "content": "Be brief."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Hi "},
                            {"type": "text", "text": "there"},
                        ],
                    },
                    {"role": "assistant", "content": "Hello", "weight": 1},
                ]
            },
        ],
    )
    found, records = load_sft_records(path)
    assert found == "messages"
    assert records == [
        ChatRecord(
            (Message(SYSTEM, "Be brief."), Message(USER, "Hi there"), Message(ASSISTANT, "Hello")),
            f"{path}:{line_of(container, 0)}",
        )
    ]


def test_text_records_skip_blank_ones(tmp_path: Path, container: str) -> None:
    path = dataset(tmp_path, container, [{"text": "one"}, {"text": "  \n"}, {"text": "three"}])
    found, records = load_sft_records(path)
    assert found == "text"
    assert records == [
        TextRecord("one", f"{path}:{line_of(container, 0)}"),
        TextRecord("three", f"{path}:{line_of(container, 2)}"),
    ]


@pytest.mark.parametrize("suffix", [".txt", ".md", ".TXT"])
def test_a_text_file_is_one_record(tmp_path: Path, suffix: str) -> None:
    # Even JSON-looking content: the suffix says plain text.
    path = write(tmp_path / f"notes{suffix}", '{"instruction": "x"}\nmore\n')
    assert load_sft_records(path) == (
        "text",
        [TextRecord('{"instruction": "x"}\nmore\n', f"{path}:1")],
    )


def test_a_directory_gives_one_record_per_text_file_sorted(tmp_path: Path) -> None:
    write(tmp_path / "b.md", "# B")
    write(tmp_path / "a.txt", "A")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "c.txt", "C")
    write(tmp_path / "blank.txt", " \n\t")
    write(tmp_path / "data.json", "[]")
    (tmp_path / ".git").mkdir()
    write(tmp_path / ".git" / "HEAD.txt", "hidden")
    write(tmp_path / ".swap.txt", "hidden")
    found, records = load_sft_records(tmp_path)
    assert found == "text"
    assert records == [
        TextRecord("A", f"{tmp_path / 'a.txt'}:1"),
        TextRecord("# B", f"{tmp_path / 'b.md'}:1"),
        TextRecord("C", f"{tmp_path / 'sub' / 'c.txt'}:1"),
    ]


def test_nul_characters_are_stripped_and_a_bom_ignored(tmp_path: Path) -> None:
    jsonl = write(
        tmp_path / "d.jsonl", b'\xef\xbb\xbf{"instruction": "a\\u0000b", "output": "c"}\n'
    )
    assert load_sft_records(jsonl)[1] == [
        ChatRecord((Message(USER, "ab"), Message(ASSISTANT, "c")), f"{jsonl}:1")
    ]
    text = write(tmp_path / "d.txt", b"\xef\xbb\xbfx\x00y")
    assert load_sft_records(text)[1] == [TextRecord("xy", f"{text}:1")]


def test_blank_lines_in_jsonl_are_skipped_but_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '\n{"text": "a"}\r\n\n  \n{"text": "b"}')
    assert [r.source for r in load_sft_records(path)[1]] == [f"{path}:2", f"{path}:5"]


def test_json_array_line_numbers_for_records_over_many_lines(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"instruction": f"q{i}", "input": "", "output": f"line 1\nline {i}"} for i in range(5)
    ]
    body = json.dumps(records, indent=4)  # 5 lines per record; "\n" in values stays escaped
    path = write(tmp_path / "d.json", "\n\n" + body.replace("},", "},\n\n"))
    # Opening bracket on line 3, first record on line 4, then every 7 lines (5 + 2 blank).
    assert [r.source for r in load_sft_records(path)[1]] == [
        f"{path}:{4 + 7 * i}" for i in range(5)
    ]
    # A record problem names the line where the bad record starts ...
    records[3]["output"] = ["not", "a", "string"]
    body = json.dumps(records, indent=4)
    write(path, body)
    assert error_of(lambda: load_sft_records(path)) == (
        f'{path}:17: Alpaca record\'s "output" is a list, not a string'
    )
    # ... a syntax error the line where the JSON breaks.
    write(path, body.replace('"q3",', '"q3"'))
    assert error_of(lambda: load_sft_records(path)) == (
        f"{path}:19: not valid JSON (Expecting ',' delimiter, column 9)"
    )


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"instruction": "x", "input": "", "output": "y"}, "alpaca"),
        ({"output": "y"}, "alpaca"),
        ({"conversations": []}, "sharegpt"),
        ({"messages": [], "id": 3}, "messages"),
        ({"text": "t"}, "text"),
    ],
)
def test_detect_format(record: dict[str, Any], expected: str) -> None:
    assert detect_format(record) == expected
    assert expected in FORMATS


def test_detect_format_of_an_unknown_record() -> None:
    message = error_of(lambda: detect_format({"question": "q", "answer": "a"}))
    assert message.startswith('record matches no dataset format (keys "question", "answer")')


def test_a_forced_format(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", dump([{"instruction": "x", "output": "y"}], "jsonl"))
    assert load_sft_records(path, format="alpaca")[0] == "alpaca"
    assert load_sft_records(path, format="ALPACA")[0] == "alpaca"
    assert error_of(lambda: load_sft_records(path, format="sharegpt")) == (
        f'{path}:1: ShareGPT record\'s "conversations" is null, not a list'
    )
    assert error_of(lambda: load_sft_records(path, format="text")) == (
        f'{path}:1: text record has no "text"'
    )
    assert error_of(lambda: load_sft_records(path, format="xml")) == (
        f'{path}: unknown dataset format "xml"; use auto, alpaca, sharegpt, messages or text'
    )


def test_forced_text_reads_any_non_json_file_as_plain_text(tmp_path: Path) -> None:
    log = write(tmp_path / "train.log", "plain words\n")
    assert load_sft_records(log, format="text") == (
        "text",
        [TextRecord("plain words\n", f"{log}:1")],
    )
    notes = write(tmp_path / "notes.md", "# notes")
    assert error_of(lambda: load_sft_records(notes, format="alpaca")) == (
        f"{notes}: plain text (a .txt or .md file, or a directory) is format text, not alpaca"
    )


# ---------------------------------------------------------------------------- real data


@needs_shared_data
def test_the_alpaca_demo_file(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    found, records = load_sft_records(ALPACA_DEMO)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nloaded {len(records)} records from {ALPACA_DEMO.name} in {elapsed * 1000:.1f} ms")
    assert found == "alpaca"
    assert len(records) == 999
    first = records[0]
    assert isinstance(first, ChatRecord)
    assert first.messages[0] == Message(USER, "Describe a process of making crepes.")
    assert first.messages[1].role == ASSISTANT
    assert first.messages[1].content.startswith("Making crepes is an easy")
    # Pretty-printed with 5 lines per record (input, output, brackets) after "[".
    assert [r.source for r in records[:2]] == [f"{ALPACA_DEMO}:2", f"{ALPACA_DEMO}:7"]


@needs_shared_data
def test_the_dpo_demo_file() -> None:
    pairs = load_preference_pairs(DPO_DEMO)
    assert len(pairs) == 300
    assert pairs[0].prompt[0].role == USER
    assert pairs[0].prompt[0].content.startswith("Hi! I'd like to create a new language game")
    assert pairs[0].chosen.startswith("That sounds like a fun and engaging idea!")
    assert pairs[0].source == f"{DPO_DEMO}:2"
    assert all(pair.prompt[-1].role == USER and pair.chosen != pair.rejected for pair in pairs)
    assert sum(pair.prompt[0].role == SYSTEM for pair in pairs) == 80
    assert max(len(pair.prompt) for pair in pairs) == 13


@needs_shared_data
def test_the_demo_files_in_the_wrong_loader() -> None:
    assert error_of(lambda: load_sft_records(DPO_DEMO)) == (
        f'{DPO_DEMO}:2: this is a preference-pair file ("chosen", "rejected"); '
        "train on it with ragtune align"
    )
    assert error_of(lambda: load_sft_records(SEED_TASKS)) == (
        f'{SEED_TASKS}:1: Alpaca record has no "output"'
    )
    assert error_of(lambda: load_preference_pairs(ALPACA_DEMO)) == (
        f'{ALPACA_DEMO}:2: Alpaca record has no "chosen"'
    )


# ---------------------------------------------------------------------------- record errors

ALPACA_OK = {"instruction": "q", "output": "a"}
SHAREGPT_OK = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}


def chat(*turns: tuple[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


def sharegpt(*turns: tuple[str, Any]) -> dict[str, Any]:
    return {"conversations": [{"from": role, "value": value} for role, value in turns]}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"instruction": "q"}, 'Alpaca record has no "output"'),
        ({"instruction": "q", "output": 5}, 'Alpaca record\'s "output" is a number, not a string'),
        ({"instruction": "q", "output": None}, 'Alpaca record\'s "output" is null, not a string'),
        ({"instruction": " ", "output": "a"}, 'Alpaca record\'s "instruction" is empty'),
        ({"instruction": "q", "output": "\n"}, 'Alpaca record\'s "output" is empty'),
        (
            {"instruction": "q", "output": "a", "input": ["x"]},
            'Alpaca record\'s "input" is a list, not a string',
        ),
        (
            {"instruction": "q", "output": "a", "history": [["only one"]]},
            'Alpaca record\'s "history" item 1 is not a [user, assistant] pair',
        ),
        (
            {"instruction": "q", "output": "a", "history": [["u", "a"], ["u", True]]},
            "Alpaca record's \"history\" item 2's assistant text is a boolean, not a string",
        ),
        ({"output": "a"}, 'Alpaca record has no "instruction"'),
        (
            SHAREGPT_OK,
            "record is sharegpt but the file is alpaca (from its first record, line L0)"
            "; use one format per file",
        ),
        (
            {"text": "t"},
            "record is text but the file is alpaca (from its first record, line L0)"
            "; use one format per file",
        ),
        (["a list"], "record is a list, not a JSON object"),
        ("a string", "record is a string, not a JSON object"),
        (None, "record is null, not a JSON object"),
    ],
)
def test_alpaca_record_errors(tmp_path: Path, container: str, bad: Any, problem: str) -> None:
    path = dataset(tmp_path, container, [ALPACA_OK, ALPACA_OK, bad, ALPACA_OK])
    problem = problem.replace("L0", str(line_of(container, 0)))
    assert error_of(lambda: load_sft_records(path)) == f"{path}:{line_of(container, 2)}: {problem}"


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            sharegpt(("human", "q"), ("bot", "a")),
            'ShareGPT turn 2 has unknown role "bot"; use human, gpt or system',
        ),
        (
            sharegpt(("human", "q"), ("gpt", "a"), ("human", "more?")),
            "the conversation ends with a user message; it must end with an assistant reply"
            " to learn",
        ),
        (
            sharegpt(("human", "q"), ("system", "s"), ("gpt", "a")),
            "ShareGPT turn 2 is a system message after the conversation started; "
            "system messages must come first",
        ),
        (sharegpt(("human", "q"), ("gpt", " ")), "ShareGPT turn 2 is an empty assistant reply"),
        (
            sharegpt(("human", "q"), ("gpt", 7)),
            'ShareGPT turn 2\'s "value" is a number, not a string',
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, {"value": "a"}]},
            'ShareGPT turn 2 has no "from"',
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}, "a"]},
            "ShareGPT turn 2 is a string, not an object",
        ),
        (
            {"conversations": {"from": "human"}},
            'ShareGPT record\'s "conversations" is an object, not a list',
        ),
        ({"conversations": []}, 'ShareGPT record\'s "conversations" is empty'),
        ({**SHAREGPT_OK, "system": 1}, 'ShareGPT record\'s "system" is a number, not a string'),
    ],
)
def test_sharegpt_record_errors(tmp_path: Path, container: str, bad: Any, problem: str) -> None:
    path = dataset(tmp_path, container, [SHAREGPT_OK, bad])
    assert error_of(lambda: load_sft_records(path)) == f"{path}:{line_of(container, 1)}: {problem}"


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            chat(("user", "q"), ("tool", "42")),
            'message 2 has role "tool": tool messages are not supported yet',
        ),
        (
            chat(("user", "q"), ("function", "42")),
            'message 2 has role "function": tool messages are not supported yet',
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                ]
            },
            "message 2 is a tool call: tool messages are not supported yet",
        ),
        (
            chat(("user", [{"type": "image_url", "image_url": {"url": "x"}}]), ("assistant", "a")),
            'message 1 content part 1 is "image_url"; only text parts are supported',
        ),
        (
            chat(("user", [{"type": "text", "text": "q"}, "raw"]), ("assistant", "a")),
            "message 1 content part 2 is a string; only text parts are supported",
        ),
        (
            chat(("user", "q"), ("bot", "a")),
            'message 2 has unknown role "bot"; use system, user or assistant',
        ),
        (
            chat(("user", "q")),
            "the conversation ends with a user message; it must end with an assistant reply"
            " to learn",
        ),
        (chat(("user", "q"), ("assistant", None)), 'message 2\'s "content" is null, not a string'),
        ({"messages": [{"role": "user"}]}, 'message 1 has no "content"'),
        ({"messages": []}, '"messages" is empty'),
        ({"messages": "hi"}, '"messages" is a string, not a list of messages'),
    ],
)
def test_messages_record_errors(tmp_path: Path, container: str, bad: Any, problem: str) -> None:
    path = dataset(tmp_path, container, [chat(("user", "q"), ("assistant", "a")), bad])
    assert error_of(lambda: load_sft_records(path)) == f"{path}:{line_of(container, 1)}: {problem}"


def test_text_record_errors(tmp_path: Path) -> None:
    path = dataset(tmp_path, "jsonl", [{"text": "a"}, {"text": 3}])
    assert error_of(lambda: load_sft_records(path)) == (
        f'{path}:2: text record\'s "text" is a number, not a string'
    )


def test_an_unknown_format_lists_the_formats_and_some_keys(tmp_path: Path) -> None:
    keys = {f"key_{i}_{'x' * 50}": i for i in range(20)}
    path = dataset(tmp_path, "jsonl", [keys])
    message = error_of(lambda: load_sft_records(path))
    assert message.startswith(f'{path}:1: record matches no dataset format (keys "key_0_xxx')
    assert message.endswith(
        ' and 12 more); expected alpaca ("instruction", "output"), sharegpt ("conversations"), '
        'messages ("messages") or text ("text")'
    )
    assert len(message) < 600
    empty = dataset(tmp_path, "array", [{}])
    assert "(an empty object)" in error_of(lambda: load_sft_records(empty))


# ---------------------------------------------------------------------------- file errors


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (
            '{"text": "a"}\n' * 6 + '{"text": "a" "b"}\n',
            "7: not valid JSON (Expecting ',' delimiter, column 14)",
        ),
        ('{"text": "a"} {"text": "b"}\n', "1: not valid JSON (Extra data, column 15)"),
        (
            '{\n  "text": "pretty-printed"\n}\n',
            "1: not valid JSON (Expecting property name enclosed in double quotes, column 2); "
            "JSONL needs one complete record per line",
        ),
        (
            '[\n  {"text": "a"},\n  {"text": "b"}\n  {"text": "c"}\n]',
            "4: not valid JSON (Expecting ',' delimiter, column 3)",
        ),
        ('[\n  {"text": "a"},\n]\n', "3: not valid JSON (Expecting value, column 1)"),
        ('[\n  {"text": "a"}\n]\n]\n', "4: not valid JSON (Extra data, column 1)"),
        (
            '[\n  {"text": "a"},\n  {"text": "b\n',
            "3: not valid JSON (Unterminated string starting at, column 12)",
        ),
        ("[\n  1\n]", "2: record is a number, not a JSON object"),
        ('{"text": "a"}\n' + "[" * 100_000, "2: JSON nested too deeply to read"),
        ('[\n  {"text": "a"},\n  ' + "[" * 100_000, "3: JSON nested too deeply to read"),
    ],
)
def test_malformed_json(tmp_path: Path, content: str, problem: str) -> None:
    path = write(tmp_path / "data.jsonl", content)
    assert error_of(lambda: load_sft_records(path)) == f"{path}:{problem}"


def test_malformed_json_in_preference_pairs(tmp_path: Path) -> None:
    path = write(
        tmp_path / "pairs.json", '[\n  {"prompt": "q", "chosen": "a", "rejected": "b"}\n  {}]'
    )
    assert error_of(lambda: load_preference_pairs(path)) == (
        f"{path}:3: not valid JSON (Expecting ',' delimiter, column 3)"
    )


@pytest.mark.parametrize("content", ["", "  \n\n", "[]", " [ \n ] \n", "\n\n\n"])
def test_an_empty_dataset(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "data.json", content)
    assert error_of(lambda: load_sft_records(path)) == f"{path}: no training records"
    assert error_of(lambda: load_preference_pairs(path)) == f"{path}: no training records"


def test_only_blank_texts_is_an_empty_dataset(tmp_path: Path) -> None:
    path = dataset(tmp_path, "jsonl", [{"text": ""}, {"text": " "}])
    assert error_of(lambda: load_sft_records(path)) == f"{path}: no training records"
    blank = write(tmp_path / "blank.txt", "\x00 \n")
    assert error_of(lambda: load_sft_records(blank)) == f"{blank}: no training records"


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    assert error_of(lambda: load_sft_records(path)) == f"{path}: no such file or directory"
    assert error_of(lambda: load_preference_pairs(path)) == f"{path}: no such file or directory"


def test_a_directory_without_text_files(tmp_path: Path) -> None:
    write(tmp_path / "data.jsonl", '{"text": "a"}\n')
    assert error_of(lambda: load_sft_records(tmp_path)) == (
        f"{tmp_path}: no .txt or .md files in this directory"
    )
    assert error_of(lambda: load_preference_pairs(tmp_path)) == (
        f"{tmp_path}: preference pairs must be a JSON or JSONL file"
    )


def test_not_a_regular_file() -> None:
    assert error_of(lambda: load_sft_records(Path(os.devnull))) == (
        f"{os.devnull}: not a regular file"
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x1f\x8b\x08\x00binary", "not UTF-8 text (byte 0x8b at offset 1)"),
        ("[]".encode("utf-16"), "not UTF-8 text (byte 0xff at offset 0)"),
        (b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "not UTF-8 text (byte 0xe9 at offset 28)"),
        (b'[{"text": "caf\xc3"}]', "not UTF-8 text (byte 0xc3 at offset 14)"),
    ],
)
def test_not_utf8(tmp_path: Path, content: bytes, problem: str) -> None:
    path = write(tmp_path / "data.jsonl", content)
    assert error_of(lambda: load_sft_records(path)) == f"{path}: {problem}"
    text = write(tmp_path / "data.txt", content)
    assert error_of(lambda: load_sft_records(text)).startswith(f"{text}: not UTF-8 text (byte")


def test_a_text_file_that_is_not_json(tmp_path: Path) -> None:
    path = write(tmp_path / "data.json", "instruction: hi\n")
    assert error_of(lambda: load_sft_records(path)) == (
        f'{path}: not a JSON array or JSONL file (it starts with "i"); plain text must be a '
        ".txt or .md file or read with format text"
    )


def test_a_17_mib_jsonl_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("w") as file:
        file.write('{"text": "fine"}\n')
        file.write('{"text": "' + "x" * (17 * 1024 * 1024) + '"}\n')
    assert error_of(lambda: load_sft_records(path)) == (
        f"{path}:2: line is longer than the 16 MiB limit for one JSONL record"
    )


def test_a_line_just_under_the_limit_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(records_module, "MAX_LINE_BYTES", 30)
    line = '{"text": "' + "x" * 18 + '"}'  # 30 bytes
    path = write(tmp_path / "d.jsonl", line + "\n" + line)
    assert len(load_sft_records(path)[1]) == 2
    write(path, line + "x\n")
    assert "line is longer than" in error_of(lambda: load_sft_records(path))


def test_a_file_over_the_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real 4 GiB file is too slow to write; the check is the same with a smaller limit.
    monkeypatch.setattr(records_module, "MAX_FILE_BYTES", 1024**3 // 2)
    path = tmp_path / "big.jsonl"
    with path.open("wb") as file:
        file.truncate(1024**3)  # sparse: nothing is written
    assert error_of(lambda: load_sft_records(path)) == (
        f"{path}: 1.0 GiB is over the 0.5 GiB limit for a dataset file; split it"
    )


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bad\nname.jsonl", '{"text": 1}\n')
    assert error_of(lambda: load_sft_records(path)).endswith(
        'bad\\nname.jsonl:1: text record\'s "text" is a number, not a string'
    )


def test_a_long_role_name_is_shortened(tmp_path: Path) -> None:
    path = dataset(tmp_path, "jsonl", [sharegpt(("human", "q"), ("robot\n" * 20, "a"))])
    shown = "robot\\n" * 6 + "robo..."  # 40 characters, then escaped onto one line
    assert error_of(lambda: load_sft_records(path)) == (
        f'{path}:1: ShareGPT turn 2 has unknown role "{shown}"; use human, gpt or system'
    )


# ---------------------------------------------------------------------------- preference pairs


def test_trl_standard_pairs(tmp_path: Path, container: str) -> None:
    path = dataset(
        tmp_path,
        container,
        [{"prompt": "Sky colour?", "chosen": "Blue.", "rejected": "Green.", "score": 1}],
    )
    assert load_preference_pairs(path) == [
        PreferencePair(
            (Message(USER, "Sky colour?"),), "Blue.", "Green.", f"{path}:{line_of(container, 0)}"
        )
    ]


def test_trl_conversational_pairs(tmp_path: Path, container: str) -> None:
    explicit = {
        "prompt": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}],
        "chosen": [{"role": "assistant", "content": "Hello."}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "Go away."}]}],
    }
    shared = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    implicit = {
        "chosen": [
            *shared,
            {"role": "user", "content": "Joke?"},
            {"role": "assistant", "content": "Ha"},
        ],
        "rejected": [
            *shared,
            {"role": "user", "content": "Joke?"},
            {"role": "assistant", "content": "No"},
        ],
    }
    path = dataset(tmp_path, container, [explicit, implicit])
    first, second = load_preference_pairs(path)
    assert first.prompt == (Message(SYSTEM, "Be terse."), Message(USER, "Hi"))
    assert (first.chosen, first.rejected) == ("Hello.", "Go away.")
    assert second.prompt == (
        Message(USER, "Hi"),
        Message(ASSISTANT, "Hello"),
        Message(USER, "Joke?"),
    )
    assert (second.chosen, second.rejected) == ("Ha", "No")


def test_sharegpt_pairs(tmp_path: Path, container: str) -> None:
    record = {
        "conversations": [
            {"from": "system", "value": "Be terse."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello"},
            {"from": "human", "value": "Joke?"},
        ],
        "chosen": {"from": "gpt", "value": "Ha"},
        "rejected": {"from": "gpt", "value": "No"},
    }
    path = dataset(tmp_path, container, [record])
    assert load_preference_pairs(path) == [
        PreferencePair(
            (
                Message(SYSTEM, "Be terse."),
                Message(USER, "Hi"),
                Message(ASSISTANT, "Hello"),
                Message(USER, "Joke?"),
            ),
            "Ha",
            "No",
            f"{path}:{line_of(container, 0)}",
        )
    ]


def test_alpaca_pairs(tmp_path: Path, container: str) -> None:
    record = {"instruction": "Greet", "input": "Bob", "chosen": "Hi Bob!", "rejected": "No."}
    path = dataset(tmp_path, container, [record])
    [pair] = load_preference_pairs(path)
    assert pair.prompt == (Message(USER, "Greet\n\nBob"),)
    assert (pair.chosen, pair.rejected) == ("Hi Bob!", "No.")


TRL_OK = {"prompt": "q", "chosen": "good", "rejected": "bad"}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            {"prompt": "q", "chosen": "same", "rejected": " same"},
            '"chosen" and "rejected" are the same; the pair teaches nothing',
        ),
        ({"prompt": "q", "chosen": "a"}, 'record has no "rejected"'),
        (
            {"prompt": "q", "chosen": "a", "rejected": 2},
            '"rejected" is a number, not a string or a list of messages',
        ),
        ({"prompt": " ", "chosen": "a", "rejected": "b"}, '"prompt" is empty'),
        ({"chosen": "a", "rejected": "b"}, 'TRL record has no "prompt"'),
        (
            {"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
            '"chosen" ends with a user message, not the assistant reply',
        ),
        (
            {
                "chosen": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "a"}],
                "rejected": [
                    {"role": "user", "content": "y"},
                    {"role": "assistant", "content": "b"},
                ],
            },
            '"chosen" and "rejected" differ before their last message; only the final assistant '
            "reply may differ",
        ),
        (
            {
                "prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                "chosen": "x",
                "rejected": "y",
            },
            "the prompt ends with an assistant message; it must end with a user message",
        ),
        (
            {"conversations": [{"from": "human", "value": "q"}], "chosen": "x", "rejected": "y"},
            "record is sharegpt but the file is trl (from its first record, line L0); "
            "use one format per file",
        ),
        ({"question": "q"}, None),
    ],
)
def test_preference_errors(tmp_path: Path, container: str, bad: Any, problem: str | None) -> None:
    path = dataset(tmp_path, container, [TRL_OK, bad])
    message = error_of(lambda: load_preference_pairs(path))
    prefix = f"{path}:{line_of(container, 1)}: "
    if problem is None:  # the second record matches no format: the first record's parser says so
        assert message == prefix + 'record has no "chosen"'
    else:
        assert message == prefix + problem.replace("L0", str(line_of(container, 0)))


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (
            {
                "conversations": [{"from": "human", "value": "q"}],
                "chosen": {"from": "human", "value": "a"},
                "rejected": {"from": "gpt", "value": "b"},
            },
            'ShareGPT "chosen" is a user turn; it must be a gpt reply',
        ),
        (
            {
                "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
                "chosen": {"from": "gpt", "value": "a"},
                "rejected": {"from": "gpt", "value": "b"},
            },
            "the conversation ends with an assistant message; it must end with a user message",
        ),
        (
            {
                "conversations": [{"from": "human", "value": "q"}],
                "chosen": {"from": "gpt", "value": "a"},
            },
            'ShareGPT record has no "rejected"',
        ),
        (
            {
                "conversations": [{"from": "human", "value": "q"}],
                "chosen": {"from": "gpt", "value": ""},
                "rejected": {"from": "gpt", "value": "b"},
            },
            'ShareGPT "chosen" is an empty reply',
        ),
    ],
)
def test_sharegpt_pair_errors(tmp_path: Path, bad: Any, problem: str) -> None:
    path = dataset(tmp_path, "jsonl", [bad])
    assert error_of(lambda: load_preference_pairs(path)) == f"{path}:1: {problem}"


def test_an_unknown_preference_format(tmp_path: Path) -> None:
    path = dataset(tmp_path, "array", [{"question": "q", "answer": "a"}])
    assert error_of(lambda: load_preference_pairs(path)) == (
        f'{path}:2: record matches no preference-pair format (keys "question", "answer"); '
        'expected TRL ("prompt", "chosen", "rejected"), ShareGPT ("conversations", "chosen", '
        '"rejected") or Alpaca ("instruction", "chosen", "rejected")'
    )


def test_preference_pairs_from_plain_text_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "pairs.txt", "chosen: a")
    assert error_of(lambda: load_preference_pairs(path)) == (
        f"{path}: preference pairs must be a JSON or JSONL file"
    )
