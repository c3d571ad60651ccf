"""The ffmpeg command builder and progress parser, tested as data (no ffmpeg run here)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from speak_encoder.errors import EncodeError, ResourceError
from speak_encoder.pipeline.ffmpeg import EncoderTuning, build_command, filter_graph
from speak_encoder.pipeline.ffmpeg_run import ProgressParser, explain_failure
from speak_encoder.pipeline.ladder import Ladder, load_ladder, parse_ladder
from speak_encoder.pipeline.plan import EncodeOptions, EncodePlan, plan_encode
from speak_encoder.pipeline.probe import AudioStream, MediaInfo, VideoStream


def plan_for(
    width: int = 1920,
    height: int = 1080,
    *,
    audio: bool = True,
    fps: Fraction = Fraction(30),
    hdr: bool = False,
    short: bool = False,
    duration: float = 120.0,
    extras: bool = True,
    ladder: Ladder | None = None,
) -> EncodePlan:
    info = MediaInfo(
        "mov,mp4",
        duration,
        1,
        VideoStream(2, "h264", width, height, Fraction(1), 0, fps, "yuv420p", 8,
                    "smpte2084" if hdr else "bt709", ""),
        AudioStream(5, "aac", 2, 44100) if audio else None,
        1 if audio else 0,
        3,
    )  # fmt: skip
    return plan_encode(info, EncodeOptions(short=short, extras=extras), ladder or load_ladder())


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_one_process_decodes_once_and_maps_every_rung() -> None:
    args = build_command(plan_for(), Path("/in/src.mp4"), Path("/w/out"), EncoderTuning())
    assert args.count("-i") == 1 and option(args, "-i") == "file:/in/src.mp4"
    graph = option(args, "-filter_complex")
    assert graph.startswith("[0:2]fps=30,split=5[s0][s1][s2][xp][xs]")
    assert "[s0]scale=1920:1080:flags=bicubic,setsar=1,format=yuv420p[v0]" in graph
    assert "[s2]scale=854:480:flags=bicubic,setsar=1,format=yuv420p[v2]" in graph
    assert "[0:5]aresample=48000" in graph and "asplit=3[a0][a1][a2]" in graph
    maps = [args[i + 1] for i, a in enumerate(args) if a == "-map"]
    assert maps[:6] == ["[v0]", "[a0]", "[v1]", "[a1]", "[v2]", "[a2]"]
    assert (
        option(args, "-var_stream_map") == "v:0,a:0,name:1080p v:1,a:1,name:720p v:2,a:2,name:480p"
    )
    assert option(args, "-master_pl_name") == "manifest.m3u8"
    assert "/w/out/%v/index.m3u8" in args
    assert option(args, "-hls_segment_filename") == "/w/out/%v/seg_%d.ts"


def test_without_extras_the_graph_is_the_ladder_alone() -> None:
    args = build_command(plan_for(extras=False), Path("/in/s.mp4"), Path("/w/out"), EncoderTuning())
    graph = option(args, "-filter_complex")
    assert graph.startswith("[0:2]fps=30,split=3[s0][s1][s2];")
    assert "select" not in graph and "tile" not in graph
    assert "signalstats" not in graph and ".poster-stats" not in graph  # no stats file either
    assert args[-1] == "/w/out/%v/index.m3u8" and "mjpeg" not in args


def test_extras_are_two_more_outputs_of_the_same_decode() -> None:
    args = build_command(plan_for(duration=600), Path("/in/s.mp4"), Path("/w/out"),
                         EncoderTuning())  # fmt: skip
    assert args.count("-i") == 1
    graph = option(args, "-filter_complex")
    poster = next(c for c in graph.split(";") if c.startswith("[xp]"))
    assert poster.startswith("[xp]select='eq(n\\,0)+") and "scale=1280:720" in poster
    # measured in the same run, on the frame the JPEG is made of (the poster needs no ffmpeg)
    assert poster.endswith(
        "format=yuvj420p,signalstats,blurdetect,"
        "metadata=mode=print:file=file\\\\:/w/out/.poster-stats.txt[poster]"
    )
    story = next(c for c in graph.split(";") if c.startswith("[xs]"))
    assert "select='not(mod(n\\,180))*lt(n\\,18000)'" in story  # one every 6 s, 100 tiles
    assert "scale=160:90" in story and "tile" not in story  # tiled after the encode
    maps = [args[i + 1] for i, a in enumerate(args) if a == "-map"]
    assert maps[-2:] == ["[poster]", "[story]"]
    assert args.count("-atomic_writing") == 2 and args.count("passthrough") == 2
    assert "/w/out/.poster-%d.jpg" in args and args[-1] == "/w/out/.storyboard-%d.jpg"


def test_extras_leave_before_the_upload_on_hardware() -> None:
    graph = filter_graph(plan_for(), tonemap_available=True, encoder="h264_vaapi")
    assert graph.startswith("[0:2]fps=30,split=3[hw][xp][xs];[hw]format=nv12,hwupload,split=3")


def test_gop_segments_and_hls_flags() -> None:
    args = build_command(plan_for(fps=Fraction(30000, 1001)), Path("s"), Path("o"),
                         EncoderTuning())  # fmt: skip
    # The defaults: an IDR forced at every segment boundary (6 s), scene-cut IDRs between,
    # x264's own keyint past the forced interval (no spurious IDR right before a forced one).
    assert option(args, "-g") == "360" and option(args, "-keyint_min") == "30"
    assert option(args, "-sc_threshold") == "40"
    assert option(args, "-force_key_frames") == "expr:gte(t,n_forced*6)"
    assert option(args, "-hls_time") == "6"
    assert option(args, "-hls_playlist_type") == "vod"
    assert option(args, "-hls_list_size") == "0"
    assert option(args, "-hls_flags") == "independent_segments+temp_file"
    assert option(args, "-start_number") == "0"
    assert "fps=30000/1001" in option(args, "-filter_complex")


def test_a_fixed_gop_without_scene_cuts_from_the_ladder_file() -> None:
    ladder = parse_ladder(
        '[x264]\nkeyframes = 2\nscenecut = 0\naq_mode = 3\ntune = "film"\npsy_rd = "1.00:0.15"\n'
        '[[rung]]\nname="720p"\nheight=720\nvideo_kbps=2800\nmax_kbps=2996\n'
        'buffer_kbps=4200\nprofile="high"\nlevel="4.0"\naudio_kbps=128\n'
    )
    args = build_command(plan_for(ladder=ladder), Path("s"), Path("o"), EncoderTuning())
    assert option(args, "-g") == "60" and option(args, "-keyint_min") == "60"
    assert option(args, "-sc_threshold") == "0"
    assert option(args, "-force_key_frames") == "expr:gte(t,n_forced*2)"
    assert option(args, "-aq-mode") == "3" and option(args, "-tune") == "film"
    assert option(args, "-psy-rd") == "1.00:0.15"


def test_hardware_keeps_a_fixed_two_second_gop() -> None:
    args = build_command(plan_for(), Path("s"), Path("o"), EncoderTuning(), encoder="h264_vaapi")
    assert option(args, "-g") == "60" and "-sc_threshold" not in args
    assert option(args, "-force_key_frames") == "expr:gte(t,n_forced*2)"


def test_rates_profiles_and_audio_come_from_the_ladder_table() -> None:
    args = build_command(plan_for(), Path("s"), Path("o"), EncoderTuning(crf=21, preset="fast"))
    assert option(args, "-crf") == "21" and option(args, "-preset") == "fast"
    assert option(args, "-maxrate:v:0") == "5350k" and option(args, "-bufsize:v:0") == "7500k"
    assert option(args, "-maxrate:v:1") == "2996k" and option(args, "-bufsize:v:1") == "4200k"
    assert option(args, "-maxrate:v:2") == "1498k" and option(args, "-bufsize:v:2") == "2100k"
    assert [option(args, f"-profile:v:{i}") for i in range(3)] == ["high", "high", "main"]
    assert [option(args, f"-level:v:{i}") for i in range(3)] == ["4.1", "4.0", "3.1"]
    assert [option(args, f"-b:a:{i}") for i in range(3)] == ["128k", "128k", "96k"]
    assert option(args, "-ar") == "48000" and option(args, "-ac") == "2"
    assert option(args, "-c:a") == "aac" and option(args, "-pix_fmt") == "yuv420p"


def test_silent_track_for_audio_less_sources_is_bounded() -> None:
    plan = plan_for(audio=False, duration=42.5)
    args = build_command(plan, Path("s"), Path("o"), EncoderTuning())
    assert args.count("-i") == 2
    lavfi = args.index("anullsrc=channel_layout=stereo:sample_rate=48000")
    assert args[lavfi - 3 : lavfi - 1] == ["-t", "42.500"]  # never an endless input
    assert "[1:a]aresample" in option(args, "-filter_complex")


def test_short_reads_only_the_first_minute() -> None:
    args = build_command(plan_for(short=True, duration=600), Path("s"), Path("o"),
                         EncoderTuning())  # fmt: skip
    assert args[args.index("-i") - 2 : args.index("-i")] == ["-t", "60"]
    assert option(args, "-var_stream_map") == "v:0,a:0,name:480p"


def test_hdr_is_tone_mapped_only_when_the_build_can() -> None:
    plan = plan_for(hdr=True)
    assert "tonemap=tonemap=hable" in filter_graph(plan, tonemap_available=True)
    assert "tonemap" not in filter_graph(plan, tonemap_available=False)
    assert "tonemap" not in filter_graph(plan_for(), tonemap_available=True)


def test_user_strings_never_become_options() -> None:
    args = build_command(plan_for(), Path("-y"), Path("o"), EncoderTuning())
    assert option(args, "-i") == "file:-y"


def test_memory_knobs() -> None:
    args = build_command(plan_for(), Path("s"), Path("o"),
                         EncoderTuning(x264_threads=2, rc_lookahead=20, max_muxing_queue=256,
                                       filter_threads=3))  # fmt: skip
    assert option(args, "-rc-lookahead") == "20"
    assert option(args, "-max_muxing_queue_size") == "256"
    assert option(args, "-filter_complex_threads") == "3"
    assert "2" in [option(args, a) for a in args if a.startswith("-threads")]


def test_lookahead_only_ever_lowers_the_presets_own() -> None:
    def lookahead(preset: str, value: int | None) -> str | None:
        args = build_command(plan_for(), Path("s"), Path("o"),
                             EncoderTuning(preset=preset, rc_lookahead=value))  # fmt: skip
        return option(args, "-rc-lookahead") if "-rc-lookahead" in args else None

    assert lookahead("medium", 10) == "10"
    assert lookahead("medium", None) is None
    assert lookahead("veryfast", 10) is None  # the preset's own is already 10
    assert lookahead("ultrafast", 10) is None  # raising it would only cost memory
    assert lookahead("slow", 60) is None


def test_progress_parser() -> None:
    parser = ProgressParser(duration=20.0)
    snapshots = []
    block = "frame=150\nfps=49.8\nout_time_us=5000000\nspeed=1.66x\nprogress=continue\n"
    for line in (block + "out_time_us=20000000\nspeed=2x\nprogress=end\n").splitlines():
        snap = parser.feed(line)
        if snap is not None:
            snapshots.append(snap)
    first, last = snapshots
    assert first.fraction == pytest.approx(0.25) and first.speed == pytest.approx(1.66)
    assert first.fps == pytest.approx(49.8)
    assert first.eta_seconds == pytest.approx(15 / 1.66)
    assert last.done and last.fraction == 1.0 and last.eta_seconds == 0.0
    assert parser.feed("garbage without equals") is None


def test_failure_mapping() -> None:
    error = explain_failure(
        1, ["frame=  10", "[h264 @ 0x1] error while decoding", "Conversion failed!"]
    )
    assert isinstance(error, EncodeError) and "Conversion failed!" in error.message
    assert "frame=" not in error.message
    killed = explain_failure(-9, [])
    assert isinstance(killed, ResourceError) and killed.retryable and "SIGKILL" in killed.message
