"""The README and docs/ describe the code that exists.

* the README's configuration table names every setting of ``config.Settings`` with its real
  default;
* every ``speak-encoder`` command appears in the README, with each of its options on the lines
  that document it (its synopsis or its row of the command table);
* every ``docs/…`` file cited in ``src/`` and ``tests/`` exists (and every ``§N`` cited in it is a
  section of that file); no comment cites a spec document outside the repository.

Pure text checks against the imported code: no external tool, no network.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from speak_encoder.cli import build_parser
from speak_encoder.config import SecretStr, Settings, setting_default, setting_fields
from speak_encoder.node.identity import KEY_FILE_NAME
from speak_encoder.pipeline.ffmpeg import DEFAULT_RENDER_NODE

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text("utf-8")
#: Settings whose default is computed at run time: the README shows the rule, checked here.
DERIVED = {
    "DATA_DIR": "~/.local/share/speak-encoder",
    "TEMP_DIR": "$DATA_DIR/work",
    "NODE_NAME": "speak-encoder-<hostname>",
    "VAAPI_DEVICE": DEFAULT_RENDER_NODE,
    "ENCODER_PRIVATE_KEY": f"DATA_DIR/{KEY_FILE_NAME}",
}
#: Words the table uses for "no value".
NO_VALUE = {"none", "empty", "unset", "built-in table", "sqlite in data_dir", "preset's"}
#: Options every sub-command takes (documented once, with the global flags).
GLOBAL_AFTER_COMMAND = {"--data-dir", "-v", "--verbose", "-h", "--help"}


# --- the configuration table ---------------------------------------------------------------------


def config_rows() -> list[tuple[list[str], list[str]]]:
    """(environment names, default cells) of each row of the README's configuration table."""
    start = README.index("| variable | default | meaning |")
    table = README[start:].split("\n\n", 1)[0].splitlines()[2:]
    rows = []
    for line in table:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        defaults = [part.strip() for part in cells[1].split(" / ")]
        assert names, line
        assert len(defaults) in (1, len(names)), f"{names}: {len(defaults)} defaults"
        rows.append((names, defaults * len(names) if len(defaults) == 1 else defaults))
    return rows


def shown(value: Any) -> str | None:
    """A default as the table writes it (None: no value)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def real_default(name: str) -> str | None:
    if name in DERIVED:
        return DERIVED[name]
    return shown(setting_default(name.lower()))


def test_config_table_documents_every_setting_once() -> None:
    names = [name for row_names, _ in config_rows() for name in row_names]
    assert len(names) == len(set(names)), "a setting listed twice"
    fields = {name.upper() for name in setting_fields()}
    assert set(names) - fields == set(), "rows for settings that do not exist"
    assert fields - set(names) == set(), "settings missing from the README's table"


@pytest.mark.parametrize(
    ("name", "cell"),
    [pair for names, cells in config_rows() for pair in zip(names, cells, strict=True)],
)
def test_config_table_default_is_the_real_one(name: str, cell: str) -> None:
    literal = re.match(r"`([^`]*)`", cell)
    expected = real_default(name)
    if literal is None:
        assert cell.lower() in NO_VALUE, f"{name}: {cell!r} is neither a `value` nor 'none'"
        assert expected is None, f"{name}: README says {cell!r}, the default is {expected!r}"
    else:
        assert literal.group(1) == expected, f"{name}: README {cell!r}, code {expected!r}"


def test_derived_defaults_are_what_the_code_does(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.work_dir == tmp_path / "work"  # TEMP_DIR
    assert Settings().node_name == f"speak-encoder-{socket.gethostname()}"
    if "XDG_DATA_HOME" not in os.environ:
        assert Settings().data_dir == Path.home() / ".local" / "share" / "speak-encoder"
    for name in ("temp_dir", "vaapi_device", "encoder_private_key"):
        assert setting_fields()[name].default is None, name


# --- the commands --------------------------------------------------------------------------------


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


COMMANDS = subcommands(build_parser())


def documenting_lines(command: str) -> str:
    """README lines that show ``speak-encoder <command>`` (its synopsis, with the indented lines
    that continue it, and its row of the command table)."""
    pattern = re.compile(rf"speak-encoder {re.escape(command)}(?![\w-])")
    found: list[str] = []
    continuing = False
    for line in README.splitlines():
        if pattern.search(line):
            found.append(line)
            continuing = True
        elif continuing and line.startswith((" ", "\t")) and line.strip():
            found.append(line)
        else:
            continuing = False
    return "\n".join(found)


def test_the_readme_knows_the_commands() -> None:
    assert len(COMMANDS) >= 14
    assert {"encode", "healthcheck", "run", "doctor"} <= set(COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_and_its_options_are_documented(command: str) -> None:
    lines = documenting_lines(command)
    assert lines, f"`speak-encoder {command}` does not appear in the README"
    missing = []
    for action in COMMANDS[command]._actions:
        flags = set(action.option_strings) - GLOBAL_AFTER_COMMAND
        if not action.option_strings or not flags:
            continue
        if not any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", lines) for f in flags):
            missing.append("/".join(sorted(flags)))
    assert not missing, f"`speak-encoder {command}`: options not documented: {missing}"


def test_global_options_are_documented() -> None:
    lines = "\n".join(line for line in README.splitlines() if "speak-encoder -" in line)
    for action in build_parser()._actions:
        if action.option_strings and "--help" not in action.option_strings:
            assert any(flag in lines for flag in action.option_strings), action.option_strings


# --- docs/ ------------------------------------------------------------------------------------


def cited_files() -> list[Path]:
    roots = [ROOT / "src", ROOT / "tests"]
    return [
        path
        for root in roots
        for path in sorted(root.rglob("*"))
        if path.suffix in {".py", ".toml", ".json"} and "egg-info" not in str(path)
    ]


CITATION = re.compile(r"docs/([\w./-]+?\.md)((?:[ ,]*(?:and )?§\d+(?:[–-]\d+)?)*)")


def test_every_cited_docs_file_and_section_exists() -> None:
    seen = 0
    for path in [*cited_files(), ROOT / "README.md"]:
        for match in CITATION.finditer(path.read_text("utf-8")):
            seen += 1
            doc = ROOT / "docs" / match.group(1)
            assert doc.is_file(), f"{path.relative_to(ROOT)} cites docs/{match.group(1)}"
            headings = set(re.findall(r"^## §(\d+)", doc.read_text("utf-8"), re.MULTILINE))
            for first, last in re.findall(r"§(\d+)(?:[–-](\d+))?", match.group(2)):
                for number in range(int(first), int(last or first) + 1):
                    assert str(number) in headings, (
                        f"{path.relative_to(ROOT)} cites docs/{match.group(1)} §{number}"
                    )
    assert seen >= 30


def test_no_citation_of_a_spec_outside_the_repository() -> None:
    # a link's text ([protocols.md](docs/protocols.md)) is fine: its target is checked above
    outside = re.compile(r"(?<![\w/\[])(protocols|encoding|architecture)\.md")
    for path in [*cited_files(), ROOT / "README.md"]:
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            assert not outside.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
