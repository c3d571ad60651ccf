"""The ``speak-encoder`` command.

Each sub-command is a function ``(args, settings) -> exit code``. Settings are read once in
:func:`main` (the env file — ``--env-file``, ``SPEAK_ENCODER_ENV_FILE`` or
``~/.config/speak-encoder/env``, never the working directory's ``.env`` —, the environment, then
the flags of the command line); a
:class:`~speak_encoder.errors.SpeakEncoderError` becomes ``error: <message>`` and exit code 1,
Ctrl-C exit code 130 (SIGTERM of ``encode``: the same clean-up, exit code 143) — never a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speak_encoder import __version__
from speak_encoder.config import Settings, load_settings
from speak_encoder.errors import SpeakEncoderError, UsageError

Command = Callable[[argparse.Namespace, Settings], int]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. ``timeout``, ``systemctl stop``) while a command works: handled exactly
    like Ctrl-C — ffmpeg stopped, the work folder removed — then exit code 143."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _rungs(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("give at least one rung, e.g. 1080p,720p,480p")
    return names


def cmd_encode(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.console import ProgressDisplay
    from speak_encoder.pipeline.encode_job import encode
    from speak_encoder.pipeline.plan import EncodeOptions

    if args.premium:
        rungs: tuple[str, ...] | None = None
    elif args.rungs:
        rungs = args.rungs
    else:
        rungs = None  # the full ladder, as gateway jobs get
    options = EncodeOptions(
        short=args.short, rungs=rungs, extras=settings.output_extras and not args.no_extras
    )
    signal.signal(signal.SIGTERM, _terminate)
    with ProgressDisplay(enabled=not args.json and not args.quiet) as display:
        result = asyncio.run(encode(args.source, settings, options=options, out=args.out,
                                    store=args.store, report=display))  # fmt: skip
    if args.json:
        print(json.dumps(result.to_json()))
        return EXIT_OK
    print(f"HLS ladder ready: {result.folder}")
    print(f"  root CID {result.cid}  (ipfs://{result.cid}/manifest.m3u8 once published)")
    for r in result.renditions:
        print(
            f"  {r.name:>6}  {r.width}x{r.height}  {r.frame_rate:g} fps  "
            f"{r.average_bandwidth / 1000:.0f} kb/s avg  {r.segments} segments  {r.codecs}"
        )
    if result.thumbnail:
        print(f"  poster {result.to_json()['thumbnail']}")
    print(f"Play it:  ffplay {result.manifest}")
    print(f"   or:    python3 -m http.server -d {result.folder} 8000  →  any HLS player")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    from speak_encoder.pipeline.verify import format_report, validate_folder

    folder: Path = args.folder
    if not folder.is_dir():
        raise UsageError(f"{str(folder)!r} is not a folder")
    report = asyncio.run(
        validate_folder(folder, expected_duration=args.duration, ffprobe=settings.ffprobe_path)
    )
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "violations": [
                        {"check": v.check, "where": v.where, "message": v.message}
                        for v in report.violations
                    ],
                }
            )
        )
    else:
        print(format_report(report))
    return EXIT_OK if report.ok else EXIT_FAILED


def cmd_version(args: argparse.Namespace, settings: Settings) -> int:
    print(f"speak-encoder {__version__}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speak-encoder",
        description="Video encoder node for the 3Speak network.",
    )
    parser.add_argument("--version", action="version", version=f"speak-encoder {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--data-dir", type=Path, help="state folder (DATA_DIR)")
    parser.add_argument(
        "--env-file",
        type=Path,
        help="settings file to read (default: $SPEAK_ENCODER_ENV_FILE, else "
        "~/.config/speak-encoder/env if it exists; never ./.env)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    enc = sub.add_parser(
        "encode",
        help="encode a video into an HLS ladder",
        description="Encode SOURCE (a file, an http(s) URL, ipfs://CID, a CID or a …/ipfs/CID "
        "URL) into a validated HLS ladder folder.",
    )
    enc.add_argument("source", metavar="SOURCE")
    where = enc.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="output folder (default ./<source-name>-hls)")
    where.add_argument(
        "--store", action="store_true", help="keep the output in the local CID store instead"
    )
    enc.add_argument("--short", action="store_true", help="a short: 480p only, first 60 s")
    group = enc.add_mutually_exclusive_group()
    group.add_argument("--premium", action="store_true", help="the full ladder (default)")
    group.add_argument("--rungs", type=_rungs, help="comma list of rungs, e.g. 720p,480p")
    enc.add_argument(
        "--no-extras",
        action="store_true",
        help="no poster, I-frame playlists or storyboard (OUTPUT_EXTRAS=false)",
    )
    enc.add_argument("--json", action="store_true", help="print one JSON object, no progress")
    enc.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    enc.add_argument("--preset", dest="encoder_preset", help="libx264 preset (ENCODER_PRESET)")
    enc.add_argument("--crf", dest="encoder_crf", type=int, help="libx264 CRF (ENCODER_CRF)")
    enc.add_argument("--ffmpeg", dest="ffmpeg_path", help="ffmpeg binary (FFMPEG_PATH)")
    enc.add_argument("--ffprobe", dest="ffprobe_path", help="ffprobe binary (FFPROBE_PATH)")
    enc.add_argument("--work-dir", dest="temp_dir", type=Path, help="work folders (TEMP_DIR)")
    enc.set_defaults(func=cmd_encode)

    val = sub.add_parser(
        "validate",
        help="check an HLS folder against the six validity checks",
        description="Exit 0 when FOLDER passes every check of docs/encoding.md §6, 1 with the list "
        "of violations otherwise.",
    )
    val.add_argument("folder", type=Path, metavar="FOLDER")
    val.add_argument("--duration", type=float, help="expected duration in seconds")
    val.add_argument("--json", action="store_true")
    val.add_argument("--ffprobe", dest="ffprobe_path", help="ffprobe binary (FFPROBE_PATH)")
    val.set_defaults(func=cmd_validate)

    ver = sub.add_parser("version", help="print the version")
    ver.set_defaults(func=cmd_version)

    _add_optional_commands(sub)
    _global_flags_after_the_command(parser)
    return parser


def _global_flags_after_the_command(parser: argparse.ArgumentParser) -> None:
    """``--data-dir`` and ``-v`` are accepted after the command too (``run --data-dir D``),
    on every sub-command at any depth; a value given there wins over one given before."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in set(action.choices.values()):
            known = {flag for a in child._actions for flag in a.option_strings}
            if "--data-dir" not in known:
                child.add_argument(
                    "--data-dir", type=Path, default=argparse.SUPPRESS,
                    help="state folder (DATA_DIR)",
                )  # fmt: skip
            if "--verbose" not in known:
                child.add_argument(
                    "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                    help="debug logging",
                )  # fmt: skip
            _global_flags_after_the_command(child)


def _add_optional_commands(sub: Any) -> None:
    """Sub-commands of the other parts: storage (cid, car, pins) and the node (run, jobs…)."""
    from speak_encoder.cli_doctor import add_doctor_commands
    from speak_encoder.cli_gateway import add_gateway_commands
    from speak_encoder.cli_identity import add_identity_commands
    from speak_encoder.cli_node import add_node_commands
    from speak_encoder.cli_storage import add_storage_commands

    add_storage_commands(sub)
    add_node_commands(sub)
    add_identity_commands(sub)
    add_gateway_commands(sub)
    add_doctor_commands(sub)


_SETTING_FLAGS = (
    "data_dir", "encoder_preset", "encoder_crf", "ffmpeg_path", "ffprobe_path", "temp_dir",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        settings = load_settings(
            env_file=args.env_file, **{k: getattr(args, k, None) for k in _SETTING_FLAGS}
        )
        # Redaction for every command; `run` raises the level to LOG_LEVEL itself.
        from speak_encoder.logs import secrets_of, setup_logging

        level = "DEBUG" if args.verbose else "WARNING"
        setup_logging(level, settings.log_format, secrets=secrets_of(settings))
        code: int = args.func(args, settings)
        return code
    except KeyboardInterrupt as exc:
        print("cancelled: ffmpeg stopped and the work folder removed", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_CANCELLED
    except SpeakEncoderError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"error": exc.message, "kind": exc.kind, "retryable": exc.retryable}))
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED


__all__ = [
    "EXIT_CANCELLED",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "Terminated",
    "build_parser",
    "main",
]
