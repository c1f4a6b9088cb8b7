"""Crawl throughput on a generated 2,000-page site served on loopback.

    .venv/bin/python bench/crawl_throughput.py [--pages 2000]

ragtune crawls, extracts Markdown and writes one file per page; the baseline
is Scrapy crawling the same site fetch-only (its own virtual environment,
.venv-bench, made by `make bench`). Both obey robots.txt, follow links
breadth-first with 16 concurrent requests, and are timed in this one run
against the same server process.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ragtune.web.reader import WebReader

ROOT = Path(__file__).resolve().parents[1]
SCRAPY = ROOT / ".venv-bench" / "bin" / "scrapy"
SPIDER = """
import scrapy
from scrapy.linkextractors import LinkExtractor

class SiteSpider(scrapy.Spider):
    name = "site"
    extractor = LinkExtractor()

    def __init__(self, start_url, **kwargs):
        super().__init__(**kwargs)
        self.start_urls = [start_url]

    def parse(self, response):
        yield {"url": response.url}
        for link in self.extractor.extract_links(response):
            yield response.follow(link.url, self.parse)
"""
WORDS = (
    "lighthouse keeper lamp harbour tide fog horn storm vessel pilot beacon rock island "
    "shore current wreck signal watch night coast chart compass lens oil wick gallery"
).split()


def generate_site(directory: Path, pages: int) -> None:
    rng = random.Random(42)
    (directory / "p").mkdir(parents=True)
    (directory / "robots.txt").write_text("User-agent: *\nDisallow: /private/\n")
    (directory / "index.html").write_text(_page("Home", rng, ["/p/0.html"]))
    for n in range(pages - 1):
        links = [f"/p/{(n + k) % (pages - 1)}.html" for k in (1, 2, 3, 7, 31)]
        (directory / "p" / f"{n}.html").write_text(_page(f"Page {n}", rng, links))


def _page(title: str, rng: random.Random, links: list[str]) -> str:
    paragraphs = "".join(
        "<p>"
        + " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 90))).capitalize()
        + ".</p>"
        for _ in range(rng.randint(3, 8))
    )
    nav = "".join(f'<li><a href="{href}">{href}</a></li>' for href in links)
    return (
        f"<!doctype html><html><head><title>{title}</title></head><body>"
        "<header><nav><a href='/'>Home</a> <a href='/private/admin.html'>Admin</a></nav></header>"
        f"<main><article><h1>{title}</h1>{paragraphs}</article><aside><ul>{nav}</ul></aside></main>"
        "<footer>Copyright the keepers' guild.</footer></body></html>"
    )


def serve(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdout is not None
    line = server.stdout.readline().decode()  # "Serving HTTP on 127.0.0.1 port N ..."
    port = line.split(" port ")[1].split()[0]
    return server, f"http://127.0.0.1:{port}"


def run_ragtune(base: str, pages: int, out: Path) -> tuple[int, float]:
    started = time.perf_counter()
    reader = WebReader(
        crawl=True, max_pages=pages, max_depth=10_000, use_sitemaps=False, concurrency=16
    )
    count = 0
    for document in reader.lazy_load_data([base + "/"]):
        (out / f"{count}.md").write_text(document.text, encoding="utf-8")
        count += 1
    return count, time.perf_counter() - started


def run_scrapy(base: str, pages: int, work: Path) -> tuple[int, float]:
    if not SCRAPY.exists():
        sys.exit("Scrapy is not installed: run `make bench`, which makes .venv-bench")
    spider = work / "spider.py"
    spider.write_text(SPIDER)
    output = work / "scrapy.jsonl"
    started = time.perf_counter()
    subprocess.run(
        [
            str(SCRAPY),
            "runspider",
            str(spider),
            "-a",
            f"start_url={base}/",
            "-O",
            f"{output}:jsonlines",
            "-s",
            "LOG_LEVEL=ERROR",
            "-s",
            "ROBOTSTXT_OBEY=True",
            "-s",
            "CONCURRENT_REQUESTS=16",
            "-s",
            f"CLOSESPIDER_PAGECOUNT={pages}",
            "-s",
            "TELNETCONSOLE_ENABLED=False",
        ],
        check=True,
    )
    seconds = time.perf_counter() - started
    count = sum(1 for line in output.read_text().splitlines() if json.loads(line).get("url"))
    return count, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ragtune-bench-") as scratch:
        work = Path(scratch)
        generate_site(work / "site", args.pages)
        server, base = serve(work / "site")
        try:
            (work / "out").mkdir()
            ragtune_pages, ragtune_s = run_ragtune(base, args.pages, work / "out")
            scrapy_pages, scrapy_s = run_scrapy(base, args.pages, work)
        finally:
            server.terminate()
    ragtune_rate, scrapy_rate = ragtune_pages / ragtune_s, scrapy_pages / scrapy_s
    print(f"site: {args.pages} linked pages on {base}")
    print(f"{'crawler':<40} {'pages':>6} {'seconds':>8} {'pages/s':>8}")
    print(
        f"{'ragtune (fetch + extract + write)':<40} {ragtune_pages:6d} {ragtune_s:8.1f} {ragtune_rate:8.1f}"
    )
    print(
        f"{'Scrapy 2.19 (fetch only, baseline)':<40} {scrapy_pages:6d} {scrapy_s:8.1f} {scrapy_rate:8.1f}"
    )
    print(f"ragtune / Scrapy = {ragtune_rate / scrapy_rate:.2f}x")


if __name__ == "__main__":
    main()
