"""The README's walk-through, as a test reads it: its ``console`` blocks, run in order, compared.

A block is part of the walk-through when the line before its fence is
``<!-- walkthrough -->``. In it, a line starting with ``$ `` is a command (a
line ending in ``\\`` continues it); the lines after it, up to the next command
or a blank line, are what it prints. ``#`` comments after a command are the
reader's, not the shell's.

Placeholders in angle brackets stand for what differs from run to run:

- ``<id>`` (and ``<id2>``, ...): a request id. The first time one is printed it is
  captured; a command that names it gets the captured value, as a reader
  would paste it.
- ``<time>`` a clock time (``14:05:09``, or ``2026-11-30 00:02:49`` when not today), ``<token>`` a JWT, ``<hash>`` a hash,
  ``<n>`` a number, ``<path>`` a path, ``<text>`` anything on the line.
- a line holding only ``…`` stands for any number of lines.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "<!-- walkthrough -->"
# A block of what `make run`'s own terminal prints meanwhile (the console notifications):
# its lines, blank ones aside, must appear together in the stack's output.
PRINTS_MARKER = "<!-- walkthrough: make run prints -->"
_PLACEHOLDER = re.compile(r"<(id\d*|time|token|hash|n|path|text)>")
_PATTERNS = {
    "id": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "time": r"(?:\d{4}-\d{2}-\d{2} )?\d{2}:\d{2}:\d{2}",  # with the date when it is not today
    "token": r"eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+",
    "hash": r"(?:sha256:)?[0-9a-f]{16,64}",
    "n": r"\d+",
    "path": r"\S+",
    "text": r".*",
}


@dataclass
class Step:
    command: str
    expected: list[str]
    line: int  # in README.md, for the failure message


@dataclass
class Walkthrough:
    steps: list[Step]
    captured: dict[str, str] = field(default_factory=dict)
    printed: list[list[str]] = field(default_factory=list)

    def printed_in(self, expected: list[str], output: str) -> bool:
        """Whether ``expected`` (a make-run-prints block) appears in ``output``, placeholders filled."""
        lines = [line.rstrip() for line in output.splitlines() if line.strip()]
        return any(_match([*expected, "…"], lines[k:], dict(self.captured)) for k in range(len(lines)))

    def command(self, step: Step) -> str:
        """The command as a reader runs it: placeholders replaced by what was printed before."""

        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.captured:
                raise AssertionError(f"README.md:{step.line}: <{name}> is used before any output printed it")
            return self.captured[name]

        return _PLACEHOLDER.sub(fill, step.command)

    def check(self, step: Step, output: list[str]) -> None:
        """``output`` matches ``step.expected``; placeholders seen for the first time are captured."""
        if not _match(step.expected, output, self.captured):
            shown = "\n".join(output) or "(nothing)"
            raise AssertionError(
                f"README.md:{step.line}: $ {step.command}\nexpected:\n" + "\n".join(step.expected) + f"\ngot:\n{shown}"
            )


def parse(readme: Path) -> Walkthrough:
    lines = readme.read_text().splitlines()
    steps: list[Step] = []
    printed: list[list[str]] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER and i + 1 < len(lines) and lines[i + 1].startswith("```console"):
            i += 2
            while i < len(lines) and not lines[i].startswith("```"):
                if lines[i].startswith("$ "):
                    start, command = i + 1, lines[i][2:]
                    while command.endswith("\\") and i + 1 < len(lines):
                        i += 1
                        command = command[:-1] + " " + lines[i].strip()
                    steps.append(Step(_strip_comment(command), [], start))
                elif lines[i].strip() and steps:
                    steps[-1].expected.append(lines[i].rstrip())
                i += 1
        elif lines[i].strip() == PRINTS_MARKER and i + 1 < len(lines) and lines[i + 1].startswith("```console"):
            i += 2
            block = []
            while i < len(lines) and not lines[i].startswith("```"):
                if lines[i].strip():
                    block.append(lines[i].rstrip())
                i += 1
            printed.append(block)
        i += 1
    return Walkthrough(steps, printed=printed)


def _strip_comment(command: str) -> str:
    # "   # a remark" after the command; a '#' inside quotes or $(...) is left alone.
    m = re.search(r"\s{2,}#\s.*$", command)
    return command[: m.start()] if m else command


def _match(expected: list[str], output: list[str], captured: dict[str, str]) -> bool:
    if not expected:
        return not output
    head, rest = expected[0], expected[1:]
    if head.strip() == "…":
        return any(_match(rest, output[k:], captured) for k in range(len(output) + 1))
    if not output:
        return False
    trial = dict(captured)
    if not _match_line(head, output[0], trial):
        return False
    if _match(rest, output[1:], trial):
        captured.update(trial)
        return True
    return False


def _match_line(expected: str, actual: str, captured: dict[str, str]) -> bool:
    pattern, names = "", []
    pos = 0
    for m in _PLACEHOLDER.finditer(expected):
        pattern += _literal(expected[pos : m.start()])
        name = m.group(1)
        kind = re.sub(r"\d+$", "", name)
        if name in captured:
            pattern += re.escape(captured[name])
        else:
            pattern += f"({_PATTERNS[kind]})"
            names.append(name)
        pos = m.end()
    pattern += _literal(expected[pos:])
    found = re.fullmatch(pattern, actual.rstrip())
    if found is None:
        return False
    for name, value in zip(names, found.groups(), strict=True):
        if name.startswith(("id", "token")):
            captured[name] = value
    return True


def _literal(text: str) -> str:
    # "…" inside a line stands for anything there.
    return ".*".join(re.escape(part) for part in text.split("…"))


class Shell:
    """One bash, as a reader's terminal: variables exported by one command are there for the next."""

    _END = "__walkthrough_end__"

    def __init__(self, proc: asyncio.subprocess.Process):
        self._proc = proc

    @classmethod
    async def start(cls, cwd: Path, env: dict[str, str]) -> Shell:
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        shell = cls(proc)
        await shell.run("exec 2>&1")
        return shell

    async def run(self, command: str, timeout: float = 60) -> tuple[int, list[str]]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{command}\n__rc=$?; echo; echo {self._END} $__rc\n".encode())
        await self._proc.stdin.drain()
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self._proc.stdout.readline(), timeout)
            if not raw:
                raise AssertionError(f"the shell exited during: {command}")
            line = raw.decode().rstrip("\n")
            if line.startswith(self._END):
                if lines and lines[-1] == "":
                    lines.pop()  # the echo that ends a last line without a newline
                return int(line.split()[1]), lines
            lines.append(line)

    async def close(self) -> None:
        if self._proc.returncode is None:
            self._proc.kill()
            await self._proc.wait()
