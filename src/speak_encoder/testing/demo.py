"""``make demo``: generate a short sample video, encode it, say where the ladder is.

Run as ``python -m speak_encoder.testing.demo [FOLDER]``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from speak_encoder.cli import main as cli_main
from speak_encoder.testing.media import generate

#: The demo encodes a 1080p30 sample with audio, so every rung of the ladder appears.
DEMO_SAMPLE = "demo"


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else "demo").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"==> generating a {DEMO_SAMPLE} sample video in {folder}")
    source = generate(DEMO_SAMPLE, folder / "samples")
    out = folder / "sample-hls"
    shutil.rmtree(out, ignore_errors=True)
    print(f"==> encoding {source.name} (preset veryfast for the demo)")
    code = cli_main(
        ["encode", str(source), "--out", str(out), "--preset", "veryfast",
         "--work-dir", str(folder / "work")]
    )  # fmt: skip
    if code == 0:
        print(f"==> check it:  .venv/bin/speak-encoder validate {out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


__all__ = ["DEMO_SAMPLE", "main"]
