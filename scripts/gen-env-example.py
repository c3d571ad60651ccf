#!/usr/bin/env python3
"""Write .env.example: every setting of config.py with its default and meaning.

    .venv/bin/python scripts/gen-env-example.py            # rewrite .env.example
    .venv/bin/python scripts/gen-env-example.py --check    # exit 1 if it is out of date

The meaning of a setting is its ``#:`` comment in ``Settings`` (config.py), else the entry of
:data:`MEANINGS` below; a setting with neither is an error (tests/unit/test_packaging.py runs
``--check``, so a new setting cannot be forgotten). Section titles are the ``# --- name ---``
comments of the class. Defaults come from the field definitions (never from the environment or
a .env file); the two that depend on the machine are described in :data:`SHOWN_DEFAULTS`.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from speak_encoder import config  # noqa: E402
from speak_encoder.config import SecretStr, setting_fields  # noqa: E402

OUTPUT = ROOT / ".env.example"

#: Defaults computed on the machine (home folder, host name): shown as a description.
SHOWN_DEFAULTS: dict[str, str] = {
    "node_name": "speak-encoder-<hostname>",
    "data_dir": "$XDG_DATA_HOME/speak-encoder (~/.local/share/speak-encoder)",
}

#: Meanings of the settings that have no ``#:`` comment in config.py.
MEANINGS: dict[str, str] = {
    "node_name": "Name of this node (logs, gateways, job leases of a fleet).",
    "hive_username": "Hive account of the operator, announced to the gateways.",
    "encoder_private_key": (
        "The node's Ed25519 key (base64 seed); unset = DATA_DIR/identity.key "
        "(`speak-encoder keygen`). A secret."
    ),
    "data_dir": "Where the node keeps its state: job store, local CID store, pending pins, key.",
    "ffmpeg_path": "The ffmpeg binary (name on PATH or a path).",
    "ffprobe_path": "The ffprobe binary (name on PATH or a path).",
    "encoder_preset": "libx264 preset (ultrafast … placebo); medium is the network's reference.",
    "encoder_crf": "libx264 CRF: the quality target, capped by each rung's rate limits.",
    "filter_threads": "Threads ffmpeg may use for the filter graph (decode once, scale per rung).",
    "x264_rc_lookahead": (
        "x264 lookahead in frames (only ever lowers the preset's own); empty or `preset` = the "
        "preset's."
    ),
    "max_muxing_queue": "Packets ffmpeg may buffer per output stream (bounds its memory).",
    "gateway_url": "Base URL of the legacy 3Speak encoder gateway.",
    "embed_gateway_url": "Base URL of the 3Speak embed gateway.",
    "hardware_acceleration": "Use a working hardware H.264 encoder (NVENC, QSV, VA-API) if any.",
    "ipfs_gateways": "Public IPFS gateways tried, in order, for IPFS sources (comma list).",
    "ipfs_api_addr": "The local IPFS (Kubo) RPC API, multiaddr or URL; empty = none.",
    "fetch_stall_timeout": "Seconds without a byte before a download is abandoned.",
    "fetch_connect_timeout": "Seconds to connect (TCP + TLS) to a source.",
    "fetch_resumes": "Times a dropped download is resumed with a Range request.",
    "max_source_mb": "Largest source accepted, in MiB.",
    "disk_reserve_mb": "Free space (MiB) always left in the work directory; below, intake pauses.",
    "chunk_bytes": "Bytes per read/write when streaming to and from disk.",
    "traffic_director_url": "The 3Speak traffic director (PUBLISH_TARGETS hotnode).",
    "threespeak_ipfs_endpoint": "The 3Speak supernode's IPFS RPC API (PUBLISH_TARGETS supernode).",
    "ipfs_cluster_url": "IPFS Cluster REST API (PUBLISH_TARGETS cluster).",
    "ipfs_cluster_token": "Bearer token of the IPFS Cluster API. A secret.",
    "pinning_service_url": "IPFS Pinning Service API endpoint (PUBLISH_TARGETS pinning_service).",
    "pinning_service_token": "Bearer token of the pinning service. A secret.",
    "ipfs_connect_timeout": "Seconds to connect to an IPFS RPC endpoint.",
    "ipfs_upload_stall_timeout": "Seconds an upload may go without the peer accepting a byte.",
    "ipfs_processing_timeout": "Seconds the IPFS node may take to answer after an upload.",
    "pin_retry_base": "First back-off (s) of a pending pin; doubles per failed attempt.",
    "pin_retry_max": "Longest back-off (s) of a pending pin.",
    "pin_max_age_hours": "Pending pins older than this (hours) are given up.",
    "max_concurrent_jobs": "Jobs encoded at once.",
    "queue_max": "Jobs waiting or running beyond which submissions are refused.",
    "max_attempts": "Failed attempts after which a job fails for good.",
    "retry_base": "Back-off (s) of a retried job: base × 2^(attempts-1) ± 20 %, capped.",
    "retry_max": "Longest back-off (s) of a retried job.",
    "stuck_timeout": "Seconds without progress in any stage before the watchdog cancels a job.",
    "job_timeout": "Longest a job may run at all (seconds).",
    "shutdown_grace": "Seconds running jobs get after SIGTERM before they are requeued.",
    "lease_seconds": "Seconds a claimed job belongs to its node unless the heartbeat renews it.",
    "memory_log_interval": "Seconds between two memory log lines.",
    "memory_warn_mb": "RSS (encoder + ffmpeg, MiB) above which caches are pruned with a warning.",
    "memory_critical_mb": "RSS (encoder + ffmpeg, MiB) above which intake pauses.",
    "result_ttl_hours": "Hours finished results stay in memory caches.",
    "history_days": "Days finished jobs stay in the job store.",
    "disk_factor": "Free disk needed to start a job: announced source size × this factor.",
    "direct_api_enabled": "Serve the Direct API (3Speak pushes jobs to this node).",
    "direct_api_host": "Address the Direct API listens on (0.0.0.0 = every interface).",
    "direct_api_port": "Port of the Direct API.",
    "direct_api_key": "Key every Direct API request must send (X-API-Key or Bearer). A secret.",
    "webhook_timeout": "Seconds a completion webhook request may take.",
    "webhook_retry_base": "First back-off (s) of a failed webhook; doubles per attempt.",
    "webhook_retry_max": "Longest back-off (s) of a failed webhook.",
    "log_level": "DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    "database_url": "SQLAlchemy URL of the job store; empty = SQLite in DATA_DIR. A secret.",
}

_SECTION = re.compile(r"^\s*# --- (?P<title>.+?) -+\s*$")
_DOC = re.compile(r"^\s*#: ?(?P<text>.*)$")
_FIELD = re.compile(r"^    (?P<name>[a-z_][a-z0-9_]*)\s*:")


def _scan_class(source: str) -> tuple[dict[str, str], dict[str, str]]:
    """Section title and ``#:`` comment of each field, from the text of class Settings."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class Settings"))
    sections: dict[str, str] = {}
    docs: dict[str, str] = {}
    section = "settings"
    pending: list[str] = []
    for line in lines[start + 1 :]:
        if line and not line.startswith((" ", "\t")):
            break  # end of the class
        if match := _SECTION.match(line):
            section, pending = match["title"], []
        elif match := _DOC.match(line):
            pending.append(match["text"].strip())
        elif match := _FIELD.match(line):
            sections[match["name"]] = section
            if pending:
                docs[match["name"]] = " ".join(pending)
            pending = []
        elif line.strip() and not line.strip().startswith("#"):
            pending = [] if not line.startswith("        ") else pending
    return sections, docs


def _shown(value: Any) -> str:
    if value is None or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    return str(value)


def _range(field: Any) -> str:
    bounds = []
    limits = field.metadata.get("bounds", {})
    for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        value = limits.get(attr)
        if value is not None:
            bounds.append(f"{sign} {value}")
    return f" ({', '.join(bounds)})" if bounds else ""


def render() -> str:
    source = Path(config.__file__).read_text("utf-8")
    sections, docs = _scan_class(source)
    missing = [n for n in setting_fields() if n not in docs and n not in MEANINGS]
    if missing:
        raise SystemExit(
            "error: no meaning for "
            + ", ".join(n.upper() for n in missing)
            + ": add a `#:` comment above the field in config.py (or an entry in MEANINGS of "
            "scripts/gen-env-example.py)"
        )
    out = [
        "# speak-encoder settings — every one, with its default and meaning.",
        "# Generated from src/speak_encoder/config.py by scripts/gen-env-example.py: do not edit",
        "# here. Copy to ~/.config/speak-encoder/env (read when it exists), to a file named by",
        "# --env-file or SPEAK_ENCODER_ENV_FILE, or to /etc/speak-encoder/env for the systemd unit;",
        "# uncomment and change what you need; an unset variable keeps the default shown. A .env",
        "# in the working directory is never read. The file must be yours and writable by nobody",
        "# else (it is refused otherwise); keep it private (chmod 600) once it holds a secret.",
    ]
    current = None
    for name, field in setting_fields().items():
        section = sections.get(name, "settings")
        if section != current:
            current = section
            out += ["", f"# === {section} " + "=" * max(3, 92 - len(section))]
        meaning = docs.get(name) or MEANINGS[name]
        if name in SHOWN_DEFAULTS:
            default = ""
            meaning += f" Default: {SHOWN_DEFAULTS[name]}."
        elif field.default is dataclasses.MISSING:
            default = ""
        else:
            default = _shown(field.default)
        out.append("")
        out.extend(f"# {line}" for line in _wrap(meaning + _range(field)))
        out.append(f"# {name.upper()}={default}")
    return "\n".join(out) + "\n"


def _wrap(text: str, width: int = 98) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if .env.example is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    text = render()
    if args.check:
        current = args.output.read_text("utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run scripts/gen-env-example.py", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, "utf-8")
    print(f"wrote {args.output} ({len(setting_fields())} settings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
