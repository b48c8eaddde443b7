"""How an error reads on the command line: CLI syntax, printable, one bounded line.

The library's messages are written for Python callers (``train with orientation='user'``);
a CLI user sets options with ``--set orientation=user``. Messages can also quote file
content, which for a binary file is control bytes and U+FFFD replacement characters that
garble the terminal: those are escaped, and very long messages are cut.
"""

from __future__ import annotations

import re

MAX_CHARS = 600
# "with key='value'", "use key='value'", ...: a suggestion to set a training option
_SUGGESTION = re.compile(
    r"\b(with|use|or|set|try|pass)\s+([a-z_]+)=(?:'([^']*)'|\"([^\"]*)\"|([\w.+-]+))"
)


def _option_names() -> set[str]:
    from deeprec.train.config import TrainConfig

    return set(TrainConfig.option_names())


def cli_syntax(message: str) -> str:
    """Python-style option suggestions for TrainConfig options as ``--set key=value``."""
    names = _option_names()

    def swap(match: re.Match[str]) -> str:
        verb, key = match.group(1), match.group(2)
        if key not in names:
            return match.group(0)
        value = next(v for v in match.groups()[2:] if v is not None)
        return f"{verb} --set {key}={value}"

    return _SUGGESTION.sub(swap, message)


def printable(message: str, limit: int = MAX_CHARS) -> str:
    """Control and non-printable characters escaped (\\xNN, \\uNNNN), U+FFFD (bytes that
    were not UTF-8) shown as '?', newlines kept as ' | ', cut to `limit` characters."""
    out = []
    for ch in message:
        if ch == "\n":
            out.append(" | ")
        elif ch == "\ufffd":
            out.append("?")
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    text = "".join(out)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def binary_share(message: str) -> float:
    """The share of a message's characters that are not printable text."""
    if not message:
        return 0.0
    bad = sum(1 for ch in message if ch == "\ufffd" or (not ch.isprintable() and ch != "\n"))
    return bad / len(message)


def cli_error(message: str) -> str:
    """The one line `deeprec` prints for a library error."""
    hint = ""
    if binary_share(message) > 0.05:
        hint = " (the file looks binary, not text: check the path and --format)"
    return printable(cli_syntax(message)) + hint
