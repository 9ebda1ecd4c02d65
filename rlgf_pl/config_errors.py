"""Config and flag errors as one message with the fix: a typo gets a "did you mean", a bad class_path the
names its module does have, a wrong value the type it needs; instead of jsonargparse's usage dump and exit 2.

`RLGFArgumentParser.error` turns the message jsonargparse would print into a `ConfigError`, which the `rlgf`
command prints as one line and exits with 1 (like every other input error).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

from rlgf_pl.errors import ConfigError

_KEY = re.compile(r'Parser key "([^"]+)"')
_CLASS = re.compile(r"Problem with given class_path '([^']+)'")
_OPTION = re.compile(r"Option '([^']+)' is not accepted")
_NO_ATTRIBUTE = re.compile(r"module '([^']+)' has no attribute '([^']+)'")
_NO_MODULE = re.compile(r"No module named '([^']+)'")
_NOT_ACCEPTED = re.compile(r"(?:Subcommand '(\w+)'|Group '([^']+)') does not accept option '([^']+)'")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)")
_EXPECTED = re.compile(r"Expected a <class '([^']+)'>")
_NESTED_VALUE = re.compile(r"NestedArg\(key='[^']*', val=(.*)\)$")
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']+)'")
COMMANDS = ["fit", "validate", "test", "zoo", "serve", "export"]


class RLGFArgumentParser(LightningArgumentParser):
    """LightningCLI's parser, whose final error is a one-line `ConfigError` instead of a usage dump."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if self.exit_on_error and not os.environ.get("JSONARGPARSE_DEBUG"):  # the printing path, not an inner try
            raise ConfigError(explain(message, self)) from None
        super().error(message, ex)


def closest(word: str, choices: list[str]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def init_arguments(cls: type) -> list[str]:
    """The keyword arguments a class accepts, following **kwargs up its bases as jsonargparse does."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is object:
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return list(dict.fromkeys(names))


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except Exception:  # noqa: BLE001 (no suggestion then)
        return None


def _parser_keys(parser: Any, subcommand: str | None) -> list[str]:
    """Every option key the (sub)command's parser knows, e.g. 'trainer.max_epochs'."""
    action = getattr(parser, "_subcommands_action", None)
    if subcommand and action is not None and subcommand in action._name_parser_map:
        parser = action._name_parser_map[subcommand]
    return [option.lstrip("-") for option in getattr(parser, "_option_string_actions", {}) if option.startswith("--")]


def _suggest_key(key: str, keys: list[str]) -> str | None:
    """The known key closest to `key`, or `key` with its first part corrected ('trainr.x' -> 'trainer.x')."""
    match = closest(key, keys)
    if match:
        return match
    head, _, rest = key.partition(".")
    fixed = closest(head, sorted({k.split(".")[0] for k in keys}))
    if fixed and rest and fixed != head:
        return closest(f"{fixed}.{rest}", keys) or f"{fixed}.{rest}"
    return None


def _did_you_mean(suggestion: str | None) -> str:
    return f" Did you mean '{suggestion}'?" if suggestion else ""


def _class_error(path: str, class_path: str, lines: list[str]) -> str | None:
    text = "\n".join(lines)
    option, no_attribute, no_module = _OPTION.search(text), _NO_ATTRIBUTE.search(text), _NO_MODULE.search(text)
    if option:
        key = option.group(1)
        cls = _import(class_path)
        head = key.split(".")[0]
        names = init_arguments(cls) if isinstance(cls, type) else []
        hint = _did_you_mean(closest(head, names)) if head not in names else ""
        where = f"'{path}.init_args.{key}'"
        if head in names:
            return f"{where}: {class_path}'s argument '{head}' has no option '{key[len(head) + 1:]}'. Fix the key."
        listed = f" Its arguments: {', '.join(names)}." if names and not hint else ""
        return f"{where}: {class_path} has no argument '{head}'.{hint}{listed}"
    if no_attribute:
        module, name = no_attribute.groups()
        members = _class_names(module)
        hint = _did_you_mean(f"{module}.{m}" if (m := closest(name, members)) else None)
        return f"'{path}.class_path': {module} has no class '{name}'.{hint}"
    if no_module:
        return (f"'{path}.class_path': {class_path!r} cannot be imported: no module named '{no_module.group(1)}'. "
                "Check the spelling; a module of your own must be importable from the working directory (run "
                "rlgf there, or set PYTHONPATH).")
    return None


def _class_names(module: str) -> list[str]:
    """The public classes of `module` (none when it does not import)."""
    try:
        members = vars(importlib.import_module(module))
    except Exception:  # noqa: BLE001 (no suggestion then)
        return []
    return [name for name, value in members.items() if isinstance(value, type) and not name.startswith("_")]


def explain(message: str, parser: Any = None) -> str:
    """jsonargparse's error message as one line that names the key, what is wrong, and a suggestion."""
    lines = message.splitlines()
    first = lines[0] if lines else message
    subcommand = next((a for a in ("fit", "validate", "test") if f" {a} " in f" {getattr(parser, 'prog', '')} "),
                      None)
    invalid = _INVALID_CHOICE.search(first)
    if invalid and "subcommand" in first:
        hint = _did_you_mean(closest(invalid.group(1), COMMANDS))
        return f"unknown command '{invalid.group(1)}'.{hint} Commands: {', '.join(COMMANDS)}."
    unrecognized = _UNRECOGNIZED.match(first)
    if unrecognized:
        words = unrecognized.group(1).split()
        flags = [w for w in words if w.startswith("--")]
        if not flags:  # a subcommand typo
            hint = _did_you_mean(closest(words[0], COMMANDS))
            return f"unknown command or argument '{words[0]}'.{hint}"
        flag = flags[0].split("=")[0].lstrip("-").rstrip("+")
        keys = _parser_keys(parser, subcommand or (words[0] if not words[0].startswith("-") else None))
        return f"unknown option '--{flag}'.{_did_you_mean('--' + s if (s := _suggest_key(flag, keys)) else None)}"
    not_accepted = _NOT_ACCEPTED.search(first)
    if not_accepted:
        command, group, key = not_accepted.groups()
        keys = _parser_keys(parser, command or subcommand)
        where = f"'{group}.{key}'" if group else f"'{key}'"
        return f"unknown key {where} in the config.{_did_you_mean(_suggest_key(key, keys))}"
    path: list[str] = []
    class_path = None
    for i, line in enumerate(lines):
        key, cls = _KEY.search(line), _CLASS.search(line)
        if key:
            path.append(key.group(1))
        elif cls:
            class_path = cls.group(1)
            explained = _class_error(".".join(path), class_path, lines[i + 1:])
            if explained and not any(_KEY.search(rest) or _CLASS.search(rest) for rest in lines[i + 1:]):
                return explained
            path.append("init_args")
    expected = [t for t in _EXPECTED.findall(message) if t != "NoneType"]
    given = next((line.split(":", 1)[1].strip() for line in reversed(lines) if "Given value:" in line), None)
    if given is not None and (nested := _NESTED_VALUE.match(given)):
        given = nested.group(1)
    where = f"'{'.'.join(path).removesuffix('.init_args')}': " if path else ""
    if expected and given is not None:
        return f"{where}expected {' or '.join(expected)}, got {given}."
    detail = next((line.strip(" -") for line in reversed(lines) if line.strip().startswith("- ")
                   and "NoneType" not in line), first)
    return f"{where}{detail}"
