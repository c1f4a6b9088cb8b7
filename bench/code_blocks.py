"""Code blocks on documentation pages: ragtune against trafilatura, plus one huge page.

    .venv/bin/python bench/code_blocks.py [--limit N] [--huge-mb 20]

On the HTML manual of Debian's python3.11-doc (apt-get install python3.11-doc), every
`<pre>` block of every page is one case: it is kept when the extracted Markdown has a
fenced block with exactly its text (every character, indentation and blank line; only
the blank lines at its two ends are left out, as a browser shows it). Prints the share
kept and pages/s for ragtune and for trafilatura's Markdown output at two settings,
then extracts generated one-line pages of about --huge-mb MB (nested divs and spans;
one text node) in a fresh process each and prints seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import trafilatura
from lxml import html as lxml_html

from ragtune import extract_html
from ragtune.errors import ExtractionError

MANUAL = Path("/usr/share/doc/python3.11/html")
_FENCE_OPEN = re.compile(r"^(?P<prefix>(?:[ \t]*>[ \t]?)*[ \t]*)(?P<fence>`{3,}|~{3,})[^`]*$")


def expected_blocks(html: bytes) -> list[str]:
    """Each `<pre>`'s text as a browser shows it, without blank lines at its ends."""
    tree = lxml_html.fromstring(html)
    blocks = []
    for pre in tree.iter("pre"):
        if any(True for _ in pre.iterancestors("pre")):
            continue
        for br in pre.iter("br"):
            br.tail = "\n" + (br.tail or "")
        text = "".join(pre.itertext()).strip("\n")
        if text.strip():
            blocks.append(text)
    return blocks


def fenced_blocks(markdown: str) -> list[str]:
    """The contents of the Markdown's fenced blocks, with the quote or list indentation
    they sit under taken off."""
    blocks: list[str] = []
    lines = markdown.split("\n")
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        prefix, fence = opening.group("prefix"), opening.group("fence")
        content: list[str] = []
        i += 1
        while i < len(lines):
            line = lines[i]
            body = line[len(prefix) :] if line.startswith(prefix) else line.lstrip(" >")
            if body.strip() == fence and body.startswith(fence):
                break
            content.append(body if line.startswith(prefix) or line.strip(" >") else "")
            i += 1
        blocks.append("\n".join(content))
        i += 1
    return blocks


def ragtune_markdown(html: bytes) -> str:
    try:
        return extract_html(html).markdown
    except ExtractionError:
        return ""


def trafilatura_markdown(html: bytes) -> str:
    return (
        trafilatura.extract(
            html, output_format="markdown", include_formatting=True, include_tables=True
        )
        or ""
    )


def trafilatura_recall(html: bytes) -> str:
    return (
        trafilatura.extract(
            html,
            output_format="markdown",
            include_formatting=True,
            include_tables=True,
            favor_recall=True,
        )
        or ""
    )


def measure(extractor: Callable[[bytes], str], pages: list[bytes]) -> dict[str, float]:
    kept = total = 0
    seconds = 0.0
    for html in pages:
        expected = expected_blocks(html)
        started = time.perf_counter()
        markdown = extractor(html)
        seconds += time.perf_counter() - started
        found = Counter(fenced_blocks(markdown))
        for text in expected:
            total += 1
            if found[text] > 0:
                found[text] -= 1
                kept += 1
    return {"kept": kept, "total": total, "pages_per_s": len(pages) / seconds}


_HUGE_CHILD = r"""
import json, resource, sys, time
from ragtune import extract_html
kind, size = sys.argv[1], int(sys.argv[2])
words = "alpha beta gamma delta epsilon zeta eta theta iota kappa "
if kind == "nested":
    parts, n, i = [], 0, 0
    while n < size:
        block = "".join(f'<div class="c{d}"><span>{words}{i}-{d}</span>' for d in range(40)) + "</div>" * 40
        parts.append(block); n += len(block); i += 1
    html = "<!DOCTYPE html><html><head><title>Big</title></head><body>" + "".join(parts) + "</body></html>"
    last = f"{i - 1}-39"
else:
    html = "<html><head><title>One</title></head><body><p>" + "word " * (size // 5) + "end-of-page</p></body></html>"
    last = "end-of-page"
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
page = extract_html(html)
seconds = time.perf_counter() - started
print(json.dumps({"kind": kind, "bytes": len(html), "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_before_mb": before / 1024, "last_text_kept": last in page.text}))
"""


def huge_page(kind: str, megabytes: int) -> dict[str, object]:
    """One generated one-line page, extracted in a fresh process so its peak RSS is its own
    (generating the page is in that peak too: rss_before_mb says how much of it)."""
    result = subprocess.run(
        [sys.executable, "-c", _HUGE_CHILD, kind, str(megabytes * 1_000_000)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages")
    parser.add_argument("--huge-mb", type=int, default=20, help="size of the generated page")
    args = parser.parse_args()
    if not MANUAL.exists():
        sys.exit(f"{MANUAL} not found: apt-get install python3.11-doc")
    paths = sorted(MANUAL.rglob("*.html"))
    pages = [path.read_bytes() for path in paths]
    pages = [page for page in pages if b"<pre" in page][: args.limit]
    print(f"{len(pages)} pages with <pre> blocks from {MANUAL}")
    print(f"{'extractor':<44} {'kept':>6} {'blocks':>6} {'share':>6} {'pages/s':>8}")
    for name, extractor in (
        ("ragtune extract_html", ragtune_markdown),
        ("trafilatura markdown, include_formatting", trafilatura_markdown),
        ("trafilatura markdown, formatting+favor_recall", trafilatura_recall),
    ):
        r = measure(extractor, pages)
        share = r["kept"] / r["total"] if r["total"] else 0.0
        print(f"{name:<44} {r['kept']:6.0f} {r['total']:6.0f} {share:6.3f} {r['pages_per_s']:8.1f}")
    for kind in ("nested", "single"):
        h = huge_page(kind, args.huge_mb)
        print(
            f"huge one-line page ({kind}, {h['bytes']:,} bytes): {h['seconds']:.1f} s, "
            f"peak RSS {h['peak_rss_mb']:.0f} MB (page built: {h['rss_before_mb']:.0f} MB), "
            f"last text kept: {h['last_text_kept']}"
        )


if __name__ == "__main__":
    main()
