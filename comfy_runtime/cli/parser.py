"""argparse, with usage errors as one line: what is wrong, the fix where argparse knows it, and the --help
that lists the rest. The 8-line usage block buried the one line that mattered (and argparse reports an
unknown flag of a subcommand with the top-level usage, or not at all when a required argument is missing)."""

from __future__ import annotations

import argparse
import difflib
import re
import sys

_TYPE_WORDS = {"int": "a whole number", "float": "a number"}


class OneLineParser(argparse.ArgumentParser):
    """Its subcommands are made with the same class (argparse's add_subparsers default), so each refuses
    what it does not know itself, naming its own prog and --help."""

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(sys.argv[1:] if args is None else args)
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._not_known(extras))
        return parsed, extras

    def error(self, message: str):
        unknown = [word for word in getattr(self, "_given", []) if self._is_unknown_option(word)]
        if unknown and message.startswith("the following arguments are required"):
            message = self._not_known(unknown)  # the flag is the mistake; the missing argument follows from it
        if match := re.fullmatch(r"(argument \S+): invalid (int|float) value: (.*)", message):
            message = f"{match[1]}: {match[3]} is not {_TYPE_WORDS[match[2]]}"
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def _is_unknown_option(self, word: str) -> bool:
        return (word.startswith("-") and word != "-" and not self._negative_number_matcher.match(word)
                and word.split("=", 1)[0] not in self._option_string_actions)

    def _not_known(self, extras: list[str]) -> str:
        word = extras[0]
        if not word.startswith("-"):
            return f"unexpected argument {word!r}"
        flag = word.split("=", 1)[0]
        near = difflib.get_close_matches(flag, [o for o in self._option_string_actions if o.startswith("--")], n=3)
        return f"unknown option {flag}" + (f" (did you mean {' or '.join(near)}?)" if near else "")
