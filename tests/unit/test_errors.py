"""The error tree drawn in ``speak_encoder.errors``' docstring is the real class tree.

Like httpx's test of its exported members: the drawing is parsed, and every class, its parent
and its ``retryable`` flag must match the classes of the module — no class left out, none
invented. The tree must also stand alone: ``errors.py`` imports nothing of speak-encoder.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from speak_encoder import errors

#: One drawn line: the tree's box characters, a class name, then its description.
_LINE = re.compile(r"^(?P<indent>[\s│├└─]*)(?P<name>[A-Z][A-Za-z]+)\b(?P<rest>.*)$")
_PERMANENT_MARK = "[permanent]"


def _drawn_tree() -> dict[str, tuple[str | None, bool]]:
    """``{class: (drawn parent, drawn retryable)}`` read from the module docstring."""
    doc = errors.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    drawn: dict[str, tuple[str | None, bool]] = {}
    stack: list[str] = []  # ancestors by depth
    for line in block.splitlines():
        body = line[4:]  # the block is indented by 4
        match = _LINE.match(body)
        if match is None or match.group("name") not in vars(errors):
            continue  # a continued description
        depth = len(match.group("indent")) // 4
        name = match.group("name")
        del stack[depth:]
        parent = stack[-1] if stack else None
        # inherited from the drawn parent; RetryableError starts it, the mark ends it
        retryable = name == "RetryableError" or (parent is not None and drawn[parent][1])
        if _PERMANENT_MARK in match.group("rest"):
            retryable = False
        drawn[name] = (parent, retryable)
        stack.append(name)
    return drawn


def _real_tree() -> dict[str, tuple[str | None, bool]]:
    real: dict[str, tuple[str | None, bool]] = {}
    for name, cls in vars(errors).items():
        if not (inspect.isclass(cls) and issubclass(cls, errors.SpeakEncoderError)):
            continue
        if cls.__module__ != errors.__name__:
            continue
        bases = [b for b in cls.__bases__ if issubclass(b, errors.SpeakEncoderError)]
        assert len(bases) <= 1, f"{name} has several error bases: {bases}"
        parent = bases[0].__name__ if bases else None
        real[name] = (parent, cls.retryable)
    return real


def test_the_drawn_tree_is_the_class_tree() -> None:
    drawn, real = _drawn_tree(), _real_tree()
    assert sorted(drawn) == sorted(real), "classes drawn ≠ classes defined"
    for name, (parent, retryable) in real.items():
        real_one = (parent, retryable)
        assert drawn[name] == real_one, f"{name}: drawn {drawn[name]}, real {real_one}"


def test_the_parser_sees_the_whole_drawing() -> None:
    drawn = _drawn_tree()
    assert drawn["SpeakEncoderError"] == (None, False)
    assert drawn["GatewayError"] == ("UpstreamError", True)
    assert drawn["GatewayRejected"] == ("GatewayError", False)
    assert drawn["GatewayNodeRefused"] == ("GatewayRejected", False)
    assert len(drawn) >= 40


def test_a_gateway_refusal_is_not_retryable_and_still_a_gateway_error() -> None:
    refused = errors.GatewayNotRegistered("404", status=404)
    assert isinstance(refused, errors.GatewayError) and not refused.retryable
    assert errors.GatewayAuthRejected("401", status=401).retryable


def test_the_error_tree_imports_nothing_of_speak_encoder() -> None:
    tree = ast.parse(Path(inspect.getfile(errors)).read_text(encoding="utf-8"))
    imported: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imported.append("." * node.level + (node.module or ""))
    ours = [name for name in imported if name.startswith(("speak_encoder", "."))]
    assert ours == [], f"errors.py imports {ours}"
