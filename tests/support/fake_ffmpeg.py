"""A fake ``ffmpeg`` executable for the hardware tests (there is no GPU here, nor in CI).

:func:`install` writes a launcher script ``<home>/ffmpeg`` that runs :func:`main`. It behaves as
the real ffmpeg (it ``exec``s ``/usr/bin/ffmpeg``) except that:

* ``-version`` reports the version written in ``<home>/control.json`` (to test the cache key);
* ``-encoders`` lists exactly the hardware encoders the control file names;
* an encode with ``-c:v h264_nvenc|h264_qsv|h264_vaapi``
    - fails (exit 1, an ffmpeg-like error, and a junk file left in the output folder as a real
      crash would) when the control file lists that codec under ``fail``,
    - never ends when it is listed under ``hang``,
    - otherwise runs the real ffmpeg on the same argument list with the hardware parts swapped for
      their software equivalents (upload dropped, ``scale_cuda=w=W:h=H`` → ``scale=W:H``, codec →
      libx264), so the rest of the list — inputs, split, maps, GOP, caps, audio, HLS muxer — is
      exercised for real and the output is a valid ladder.

Every invocation is appended to ``<home>/calls.jsonl`` so tests can assert what was run.
Only the standard library is used: the launcher imports this file by path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HARDWARE = ("h264_nvenc", "h264_qsv", "h264_vaapi")
CONTROL = "control.json"
CALLS = "calls.jsonl"
#: Options that exist only on the hardware paths, each followed by one value.
HARDWARE_OPTIONS = frozenset(
    {
        "-hwaccel", "-hwaccel_output_format", "-hwaccel_device", "-vaapi_device",
        "-init_hw_device", "-filter_hw_device", "-preset", "-tune", "-rc", "-cq", "-rc_mode",
        "-forced-idr", "-forced_idr", "-no-scenecut", "-idr_interval", "-look_ahead",
    }
)  # fmt: skip
#: Per-stream options the hardware paths add (``-b:v:0`` …), dropped with their value.
HARDWARE_STREAM_OPTIONS = re.compile(r"^-(b:v|bf:v|bf)(:\d+)?$")
_DESCRIPTIONS = {
    "h264_nvenc": " V....D h264_nvenc           NVIDIA NVENC H.264 encoder (codec h264)",
    "h264_qsv": " V..... h264_qsv             H.264 (Intel Quick Sync Video acceleration)",
    "h264_vaapi": " V....D h264_vaapi           H.264/AVC (VAAPI) (codec h264)",
}


def software_equivalent(argv: list[str]) -> list[str]:
    """``argv`` of a hardware encode with the hardware parts replaced by libx264's."""
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in HARDWARE_OPTIONS or HARDWARE_STREAM_OPTIONS.match(arg):
            next(args, None)
        elif arg == "-c:v":
            next(args, None)
            out += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
        elif arg == "-filter_complex":
            graph = next(args, "")
            graph = re.sub(r",hwupload(_cuda)?(=[^,;\[]*)?", "", graph)
            graph = re.sub(r"scale_(cuda|vaapi|qsv)=w=(\d+):h=(\d+)[^,;\[]*", r"scale=\2:\3", graph)
            out += [arg, graph]
        elif arg.startswith("-profile:v:"):
            profile = next(args, "")
            out += [arg, "baseline" if profile == "constrained_baseline" else profile]
        else:
            out.append(arg)
    return out


def _log(home: Path, argv: list[str]) -> None:
    with (home / CALLS).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(argv) + "\n")


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def main(home: Path, argv: list[str]) -> int:
    _log(home, argv)
    control = json.loads((home / CONTROL).read_text("utf-8"))
    real: str = control["real"]
    if "-version" in argv:
        print(f"ffmpeg version {control['version']} Copyright (c) 2000-2022 the FFmpeg developers")
        print("built with a fake for the hardware tests")
        return 0
    if "-encoders" in argv:
        listing = subprocess.run(
            [real, "-hide_banner", "-encoders"], capture_output=True, text=True
        )
        for line in listing.stdout.splitlines():
            if not any(tag in line for tag in ("_nvenc", "_vaapi", "_qsv")):
                print(line)
        for encoder in control["encoders"]:
            print(_DESCRIPTIONS[encoder])
        return 0
    codec = _option(argv, "-c:v")
    if codec in HARDWARE:
        if codec in control.get("hang", []):
            time.sleep(3600)
        if codec in control.get("fail", []):
            junk = Path(argv[-1]).parent.parent / "junk"  # …/out/%v/index.m3u8 → …/out/junk
            junk.mkdir(parents=True, exist_ok=True)
            (junk / "seg_0.ts").write_bytes(b"\0" * 188)
            print(f"[{codec} @ 0x5581] Failed to initialise the device (fake)", file=sys.stderr)
            print("Error initializing output stream 0:0 -- Error while opening encoder for "
                  "output stream #0:0", file=sys.stderr)  # fmt: skip
            return 1
        argv = software_equivalent(argv)
    os.execv(real, [real, *argv])
    return 127  # not reached


# --- the test side ------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeFfmpeg:
    home: Path

    @property
    def path(self) -> str:
        return str(self.home / "ffmpeg")

    def configure(
        self,
        *,
        encoders: tuple[str, ...] | list[str] = (),
        fail: tuple[str, ...] | list[str] = (),
        hang: tuple[str, ...] | list[str] = (),
        version: str | None = None,
    ) -> None:
        """Set what the fake lists and which codecs fail (version: keep the current one)."""
        current = self._control()
        control = {
            "real": current["real"],
            "version": version if version is not None else current["version"],
            "encoders": list(encoders),
            "fail": list(fail),
            "hang": list(hang),
        }
        (self.home / CONTROL).write_text(json.dumps(control), "utf-8")

    def _control(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads((self.home / CONTROL).read_text("utf-8"))
        return doc

    def calls(self) -> list[list[str]]:
        path = self.home / CALLS
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()]

    def ladder_encodes(self) -> list[str]:
        """Codecs of the HLS encodes only (not the test-clip generation)."""
        return [
            str(_option(call, "-c:v"))
            for call in self.calls()
            if "-var_stream_map" in call and "-c:v" in call
        ]

    def reset_calls(self) -> None:
        (self.home / CALLS).unlink(missing_ok=True)


def install(home: Path, *, version: str = "5.1-fake") -> FakeFfmpeg:
    """Write the fake into ``home`` (its launcher is ``home/ffmpeg``) and return its handle."""
    real = shutil.which("ffmpeg")
    if real is None:
        raise RuntimeError("the fake ffmpeg needs the real one on PATH")
    home.mkdir(parents=True, exist_ok=True)
    (home / CONTROL).write_text(
        json.dumps({"real": real, "version": version, "encoders": [], "fail": [], "hang": []}),
        "utf-8",
    )
    launcher = home / "ffmpeg"
    launcher.write_text(
        f"#!{sys.executable}\n"
        "import importlib.util, pathlib, sys\n"
        f"spec = importlib.util.spec_from_file_location('fake_ffmpeg', {str(Path(__file__))!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['fake_ffmpeg'] = module\n"
        "spec.loader.exec_module(module)\n"
        f"sys.exit(module.main(pathlib.Path({str(home)!r}), sys.argv[1:]))\n",
        "utf-8",
    )
    launcher.chmod(0o755)
    return FakeFfmpeg(home)
