"""MkDocs hooks of the featavg site (mkdocs.yml `hooks:`); nothing here touches the network.

* The CLI reference is generated: in ``cli.md`` every ``<!-- featavg-help: COMMAND -->``
  marker becomes the ``featavg COMMAND --help`` text of this checkout's parser
  (``featavg.cli.build_parser``), so the page cannot drift from the code. A marker naming
  no command, or a command without a marker, fails the build.
* The pages a user reads (README.md and every Markdown file under docs/) may not cite
  internal documents: a specification section, an issue number or "the project
  specification" fails the build, naming file and line.
* Every relative link of README.md must name an existing file (mkdocs checks the links
  between the docs pages itself, in strict mode).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

HELP_MARKER = re.compile(r"<!-- featavg-help: ([a-z-]+|featavg) -->")
# what an outside reader cannot follow: sections of the project's specification ("SPEC
# §3.1", "§5"), tracker numbers ("issue 13", "#13" as an issue), "the project specification"
INTERNAL_REFERENCE = re.compile(
    r"(?-i:\bSPEC\b)|§|\bissues?\s+#?\d+|(?<![\w/])#\d+\b|project specification", re.IGNORECASE
)
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
HELP_WIDTH = "92"  # argparse wraps at $COLUMNS: fixed, so the page is the same everywhere


def _root(config: Any) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_config(config: Any) -> Any:
    """Import featavg from this checkout's src/ (the API reference reads it statically;
    the CLI reference imports the parser)."""
    src = str(_root(config) / "src")
    if src not in sys.path:
        sys.path.insert(0, src)
    return config


def _without_code(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept): commands and output
    quoted there are checked by running them, not by this prose rule."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            out.append("")
            continue
        out.append("" if fenced else line)
    return "\n".join(out)


def on_pre_build(config: Any) -> None:
    """Refuse internal references in the README and the docs pages; check README links."""
    root = _root(config)
    readme = root / "README.md"
    pages = [readme, *sorted(Path(config.docs_dir).rglob("*.md"))]
    problems = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for number, line in enumerate(_without_code(text).splitlines(), 1):
            found = INTERNAL_REFERENCE.search(line)
            if found:
                problems.append(
                    f"{page.relative_to(root)}:{number}: internal reference "
                    f"{found.group(0)!r}: say what it means instead"
                )
    readme_lines = _without_code(readme.read_text(encoding="utf-8")).splitlines()
    for number, line in enumerate(readme_lines, 1):
        for target in MARKDOWN_LINK.findall(line):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            if not (root / target.split("#", 1)[0]).exists():
                problems.append(f"README.md:{number}: link to a missing file {target!r}")
    if problems:
        raise PluginError("\n".join(problems))


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _help_texts() -> dict[str, str]:
    try:
        from featavg.cli import build_parser
    except ImportError as error:  # the CLI module moved or renamed its parser factory
        raise PluginError(f"cli.md needs featavg.cli.build_parser(): {error}") from error

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    try:
        parser = build_parser()
        texts = {"featavg": parser.format_help()}
        texts.update({name: p.format_help() for name, p in _subcommands(parser).items()})
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return texts


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Fill the CLI reference's help markers."""
    if page.file.src_uri != "cli.md":
        return markdown
    texts = _help_texts()
    named = set(HELP_MARKER.findall(markdown))
    unknown = sorted(named - set(texts))
    missing = sorted(set(texts) - named)
    if unknown or missing:
        raise PluginError(
            f"cli.md: help markers for unknown commands {unknown}; commands without a "
            f"section {missing}"
        )

    def block(match: re.Match[str]) -> str:
        return "```text\n" + texts[match.group(1)].rstrip() + "\n```"

    return HELP_MARKER.sub(block, markdown)
