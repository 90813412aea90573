"""The commands README.md and docs/*.md show, extracted from their code blocks and inline code.

Code blocks are indented (4 spaces) or fenced; a fenced block marked as output or another language (```text, ```json, ```python, ```sql)
holds no shell commands; inline code counts when it starts with `make `,
`hunyuan-video ` or `python -m comfy_runtime `. tests/test_doc_commands.py checks them;
tests/test_cog_server.py runs the served ones against its server.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from tests.support.paths import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
CLI_HEADS = (("python", "-m", "comfy_runtime"), (".venv/bin/python", "-m", "comfy_runtime"), ("hunyuan-video",),
             (".venv/bin/hunyuan-video",))


OUTPUT_BLOCKS = ("text", "json", "output", "python", "sql", "yaml")  # not shell commands


@dataclass(frozen=True)
class Command:
    page: str
    text: str

    @property
    def words(self) -> list[str]:
        words = shlex.split(self.text)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value prefixes
            words.pop(0)
        return words

    def __str__(self) -> str:
        return f"{self.page}: {self.text}"


def _code_lines(text: str) -> Iterator[list[str]]:
    """Each code block's lines, indented (4 spaces, after a blank line) or fenced."""
    block: list[str] = []
    fenced = False
    output = False  # a fenced block marked as what a command prints, not as commands
    previous_blank = True
    for line in text.splitlines():
        if line.startswith("```"):
            if fenced and not output:
                yield block
            block = []
            fenced = not fenced
            output = fenced and line[3:].strip() in OUTPUT_BLOCKS
            continue
        if fenced:
            block.append(line)
        elif line.startswith("    ") and (block or previous_blank):
            block.append(line[4:])
        elif block:
            yield block
            block = []
        previous_blank = not line.strip()
    if block:
        yield block


def _joined(lines: list[str]) -> Iterator[str]:
    current = ""
    for line in lines:
        line = re.sub(r"\s{2,}#.*$", "", line).rstrip()  # a trailing comment
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        current += line.strip()
        if current:
            yield current
        current = ""


def commands() -> list[Command]:
    found = []
    for page in PAGES:
        text = page.read_text()
        name = page.relative_to(PROJECT_ROOT).as_posix()
        for block in _code_lines(text):
            if block and block[0].lstrip().startswith("[["):  # a TOML example, not a command
                continue
            found += [Command(name, line) for line in _joined(block)]
        for span in re.findall(r"`([^`\n]+)`", text):
            if span.startswith(("make ", "hunyuan-video ", "python -m comfy_runtime ")) and "..." not in span:
                found.append(Command(name, span))
    return found


ALL = commands()


def cli_args(command: Command) -> list[str] | None:
    words = command.words
    for head in CLI_HEADS:
        if tuple(words[: len(head)]) == head:
            return words[len(head):]
    return None


def served_scripts() -> list[str]:
    """The curl commands as written, each once. The POST's pipeline is split at its first pipe so that one
    prediction feeds both decodes the README gives (jq + base64, and the python one-liner): every stage runs
    as written, on the same response."""
    texts = list(dict.fromkeys(c.text for c in ALL if c.words[0] == "curl"))
    readme = (PROJECT_ROOT / "README.md").read_text()
    py_decode = next(span for span in re.findall(r"`([^`\n]+)`", readme) if span.startswith("| python3 -c"))
    scripts = []
    for text in texts:
        if "POST" in text:
            request, decode = text.split(" | ", 1)
            scripts += [f"{request} > response.json", f"< response.json {decode}",
                        f"< response.json {py_decode[2:].replace('fox.mp4', 'fox-py.mp4')}"]
        else:
            scripts.append(text)
    return scripts
