"""Fetch pages from the web and turn them into Documents."""

from ragtune.web.fetch import FetchedPage, Fetcher
from ragtune.web.reader import WebReader

__all__ = ["FetchedPage", "Fetcher", "WebReader"]
