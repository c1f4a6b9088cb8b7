"""Documentation pages extracted right: code blocks fenced and verbatim, signatures on
one line, admonitions quoted, no permalink signs, paragraphs unbroken.

The pages come from real generators: a Sphinx project and a MkDocs project built
here, and the HTML manuals of Debian's python3.11-doc and postgresql-doc-15 where
they are installed (skipped otherwise)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from lxml import html as lxml_html

from ragtune import extract_html

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html")
POSTGRES_DOCS = Path("/usr/share/doc/postgresql-doc-15/html")
_FENCE_OPEN = re.compile(
    r"^(?P<prefix>(?:[ \t]*>[ \t]?)*[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$"
)

PYTHON_CODE = '''\
def greet(name):
    """Say hello."""

    return f"Hello, {name}!"  # two  spaces, kept


print(greet("docs"))'''
SHELL_CODE = """\
$ pip install demo
$ demo --flag   "quoted  arg" \\
      --other"""
NUMBERED_CODE = """\
for i in range(3):
    print(i)"""
YAML_CODE = """\
site_name: Demo
nav:
  - Home: index.md"""


def fenced_blocks(markdown: str) -> list[tuple[str, str]]:
    """(info string, content) of each fenced block, the quote or list prefix taken off."""
    blocks: list[tuple[str, str]] = []
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
        while i < len(lines) and lines[i][len(prefix) :] != fence:
            line = lines[i]
            content.append(line[len(prefix) :] if line.startswith(prefix) else "")
            i += 1
        blocks.append((opening.group("info").strip(), "\n".join(content)))
        i += 1
    return blocks


def pre_texts(html: bytes) -> list[str]:
    """Each `<pre>` block's text as a browser shows it (no line numbers; the blank lines
    at its ends left out), computed here independently of the extractor."""
    tree = lxml_html.fromstring(html)
    texts = []
    for pre in tree.iter("pre"):
        if any("linenos" in (a.get("class") or "") for a in pre.iterancestors()):
            continue
        for gutter in pre.xpath(".//*[contains(@class, 'linenos')]"):
            gutter.drop_tree()
        text = "".join(pre.itertext()).strip("\n")
        if text.strip():
            texts.append(text)
    return texts


def assert_every_pre_fenced_verbatim(html: bytes, markdown: str) -> None:
    expected = Counter(pre_texts(html))
    found = Counter(text for _, text in fenced_blocks(markdown))
    assert expected, "the page has no <pre> blocks to check"
    missing = expected - found
    assert not missing, (
        f"{sum(missing.values())} of {sum(expected.values())} blocks not fenced verbatim: {list(missing)[:3]}"
    )


# --- Sphinx -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sphinx_page(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    pytest.importorskip("sphinx")
    source = tmp_path_factory.mktemp("sphinx-src")
    out = tmp_path_factory.mktemp("sphinx-out")
    (source / "conf.py").write_text('project = "Demo"\nextensions = []\n', encoding="utf-8")

    def indented(code: str) -> str:
        return textwrap.indent(code, "   ")

    (source / "index.rst").write_text(
        f"""\
Demo manual
===========

The ``load`` function reads a file and the ``loads``
function reads a string, both with ``parse_float``
as a keyword-only argument.

.. code-block:: python

{indented(PYTHON_CODE)}

.. code-block:: bash

{indented(SHELL_CODE)}

.. code-block:: python
   :linenos:

{indented(NUMBERED_CODE)}

.. py:function:: load(fp, /, *, parse_float=float)

   Read a TOML file from *fp*.

.. py:function:: chain(*iterables)

   Chain the iterables.

.. note::

   Close the file when you are done with it.

Terms
-----

alpha term
   The first definition, on its own.

beta term
   The second definition.
""",
        encoding="utf-8",
    )
    subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", str(source), str(out)],
        check=True,
        capture_output=True,
    )
    return (out / "index.html").read_bytes()


def test_sphinx_code_blocks_are_fenced_verbatim_with_their_language(sphinx_page: bytes) -> None:
    markdown = extract_html(sphinx_page).markdown
    blocks = fenced_blocks(markdown)
    assert ("python", PYTHON_CODE) in blocks
    assert ("bash", SHELL_CODE) in blocks
    assert ("python", NUMBERED_CODE) in blocks  # the line-number gutter is gone
    assert len(blocks) == sphinx_page.count(b"<pre") == 3
    assert_every_pre_fenced_verbatim(sphinx_page, markdown)


def test_sphinx_signatures_admonitions_and_definitions(sphinx_page: bytes) -> None:
    page = extract_html(sphinx_page)
    markdown = page.markdown
    assert "`load(fp, /, *, parse_float=float)`" in markdown.splitlines()
    assert "`chain(*iterables)`" in markdown.splitlines()
    assert "> **Note:** Close the file when you are done with it." in markdown
    assert "¶" not in markdown and "¶" not in page.text
    lines = [line.strip("- ") for line in markdown.splitlines() if line.strip()]
    assert lines.index("alpha term") < lines.index("The first definition, on its own.")
    assert lines.index("beta term") < lines.index("The second definition.")
    assert page.title == "Demo manual"
    # Source line breaks inside a paragraph are spaces; inline literals stay inline.
    assert (
        "The `load` function reads a file and the `loads` function reads a string, "
        "both with `parse_float` as a keyword-only argument." in markdown.splitlines()
    )
    assert "Close the file when you are done with it." in page.text
    assert PYTHON_CODE in page.text  # the plain text keeps code verbatim, unfenced


# --- MkDocs -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mkdocs_page(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    pytest.importorskip("mkdocs")
    try:
        import material  # noqa: F401

        theme = "material"
    except ImportError:  # plain MkDocs renders the same extensions' markup
        theme = "mkdocs"
    project = tmp_path_factory.mktemp("mkdocs")
    (project / "docs").mkdir()
    (project / "mkdocs.yml").write_text(
        textwrap.dedent(
            f"""\
            site_name: Demo
            theme:
              name: {theme}
            markdown_extensions:
              - admonition
              - def_list
              - pymdownx.details
              - pymdownx.superfences
              - pymdownx.highlight:
                  pygments_lang_class: true
            """
        ),
        encoding="utf-8",
    )
    (project / "docs" / "index.md").write_text(
        f"""\
# Getting started

Install the package, then write a
configuration file.

```python
{PYTHON_CODE}
```

```yaml linenums="1"
{YAML_CODE}
```

!!! warning "Mind the version"
    Only version 2 reads this file.

??? tip "Hidden detail"
    It also reads `~/.demo`.

Configuration
:   The file that says what to build.
""",
        encoding="utf-8",
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "-q",
            "-f",
            str(project / "mkdocs.yml"),
            "-d",
            str(project / "site"),
        ],
        check=True,
        capture_output=True,
    )
    return (project / "site" / "index.html").read_bytes()


def test_mkdocs_page(mkdocs_page: bytes) -> None:
    page = extract_html(mkdocs_page)
    markdown = page.markdown
    blocks = fenced_blocks(markdown)
    assert ("python", PYTHON_CODE) in blocks
    assert ("yaml", YAML_CODE) in blocks  # the line-number table is gone
    assert len(blocks) == 2
    assert_every_pre_fenced_verbatim(mkdocs_page, markdown)
    assert "> **Mind the version:** Only version 2 reads this file." in markdown
    assert "> **Hidden detail:** It also reads `~/.demo`." in markdown
    assert "Install the package, then write a configuration file." in markdown.splitlines()
    assert "¶" not in markdown
    assert "The file that says what to build." in markdown


# --- Hand-written markup from other generators ---------------------------------------


def test_pygments_table_highlight_js_and_inline_code() -> None:
    html = """<html><body><article><h1>Snippets</h1>
    <p>Call <code>run(
    fast=True)</code> to start; the code below shows how, with enough words here.</p>
    <table class="highlighttable"><tr><td class="linenos"><div class="linenodiv"><pre>1
2</pre></div></td><td class="code"><div class="highlight"><pre><span class="k">if</span> x:
    <span class="n">go</span>()</pre></div></td></tr></table>
    <p>And in JavaScript, a language named on the code element:</p>
    <pre><code class="language-js hljs"><span class="hljs-keyword">const</span> a = 1;<br>a += 2;</code></pre>
    <p>A final paragraph so the page has some body text to keep around.</p>
    </article></body></html>"""
    page = extract_html(html)
    blocks = fenced_blocks(page.markdown)
    assert ("", "if x:\n    go()") in blocks
    assert ("js", "const a = 1;\na += 2;") in blocks
    assert "Call `run( fast=True)` to start;" in page.markdown  # inline stays inline
    assert len(blocks) == 2


def test_inline_code_is_verbatim_while_prose_emphasis_goes() -> None:
    html = """<html><body><article><h1>Hooks</h1>
    <p>Override <code>__init__</code>, call <code>f(*a, **kw)</code> or <code>g(**kw)</code>
    from <code>C:\\dir\\*</code>, and <strong>always</strong> return <em>None</em> here.</p>
    <p>A final paragraph so the page has some body text to keep around.</p>
    </article></body></html>"""
    markdown = extract_html(html).markdown
    assert (
        "Override `__init__`, call `f(*a, **kw)` or `g(**kw)` from `C:\\dir\\*`, "
        "and always return None here." in markdown.splitlines()
    )


def test_a_page_of_too_many_tags_keeps_its_text() -> None:
    """Past the tree-based extraction's size limit (200,000 tags) the whole text is
    streamed; how fast is for bench/code_blocks.py to measure, not a test."""
    cell = "".join(f"<div><span>w{d}</span>" for d in range(40)) + "</div>" * 40
    html = "<html><body><p>first words</p>" + cell * 3000 + "<p>last words</p></body></html>"
    text = extract_html(html).text
    assert text.startswith("first words") and text.endswith("last words")
    assert text.count("w39") == 3000


# --- Debian's documentation packages --------------------------------------------------

needs_python_docs = pytest.mark.skipif(
    not PYTHON_DOCS.is_dir(),
    reason=f"{PYTHON_DOCS} absent: Debian's python3.11-doc is not installed (apt-get install python3.11-doc)",
)


@needs_python_docs
@pytest.mark.parametrize(
    "name", ["library/itertools.html", "library/tomllib.html", "library/json.html"]
)
def test_python_manual_code_blocks_are_fenced_verbatim(name: str) -> None:
    html = (PYTHON_DOCS / name).read_bytes()
    page = extract_html(html)
    assert_every_pre_fenced_verbatim(html, page.markdown)
    assert "¶" not in page.markdown
    assert not re.search(r"^#+ .*¶", page.markdown, re.MULTILINE)


@needs_python_docs
def test_python_manual_signatures_and_see_also() -> None:
    itertools = extract_html((PYTHON_DOCS / "library/itertools.html").read_bytes()).markdown
    assert "`itertools.chain(*iterables)`" in itertools.splitlines()
    tomllib = extract_html((PYTHON_DOCS / "library/tomllib.html").read_bytes()).markdown
    assert "`tomllib.load(fp, /, *, parse_float=float)`" in tomllib.splitlines()
    assert "> **See also:** The Tomli-W package is a TOML writer" in tomllib
    assert "***" not in tomllib and "\\*" not in tomllib


@pytest.mark.skipif(
    not POSTGRES_DOCS.is_dir(),
    reason=f"{POSTGRES_DOCS} absent: Debian's postgresql-doc-15 is not installed",
)
def test_docbook_paragraphs_are_unbroken_and_listings_fenced() -> None:
    html = (POSTGRES_DOCS / "sql-createtable.html").read_bytes()
    page = extract_html(html)
    assert_every_pre_fenced_verbatim(html, page.markdown)
    # A paragraph that spans source lines is one line of text.
    tree = lxml_html.fromstring(html)
    for paragraph in tree.iter("p"):
        words = " ".join(paragraph.text_content().split())
        if "\n" in paragraph.text_content() and 60 < len(words) < 400:
            break
    else:
        pytest.fail("no multi-line paragraph in the page")
    plain_lines = page.text.splitlines()
    assert words in plain_lines
