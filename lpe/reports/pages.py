"""The ``report_page`` stage: a Markdown result (a table, the claims report) as an HTML page.

Snakemake's HTML report (``snakemake --report report.zip``) shows images, PDFs and HTML pages
and offers other files only for download, so each table and the claims report get a rendered
page next to their Markdown. Python-Markdown (with its ``tables`` extension) does the rendering;
the page is self-contained (inline style, no scripts, no network).

Usage: ``python -m lpe.reports.pages --md results/mini/claims.md --title "Claims report"
--out results/mini/report/claims.html``
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path

import markdown

from lpe.core.artifacts import write_text

STYLE = """
body { font-family: sans-serif; max-width: 72em; margin: 1em auto; line-height: 1.4; }
table { border-collapse: collapse; margin: 1em 0; font-size: 90%; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: right; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def render(text: str, title: str) -> str:
    """A whole HTML page of Markdown ``text``."""
    body = markdown.markdown(text, extensions=["tables", "sane_lists"], output_format="html")
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--md", required=True, help="the Markdown file (a table, claims.md)")
    parser.add_argument("--title", required=True, help="the page's heading")
    parser.add_argument("--out", required=True, help="the HTML page to write")
    args = parser.parse_args(argv)
    source = Path(args.md)
    if not source.is_file():
        parser.error(f"--md {source} does not exist; run the rule that writes it first")
    write_text(args.out, render(source.read_text(), args.title))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
