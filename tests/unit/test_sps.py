"""The H.264 SPS parser (frame size, crop, VUI timing) on SPS bitstreams written by hand."""

from __future__ import annotations

from fractions import Fraction

import pytest

from speak_encoder.pipeline.bitstream import (
    BitReader,
    BitstreamError,
    Sps,
    _unescape,
    avc_codec_string,
    parse_sps,
)
from speak_encoder.pipeline.hls import MAX_SPS_FRAME_RATE, VideoInfo, video_from_sps
from tests.support.sps_writer import BitWriter, SpsSpec, Vui, escape, sps_nal, sps_rbsp

TIMING_30 = Vui(aspect_ratio_idc=1, timing=(1, 60, True))

# --- the bit reader ------------------------------------------------------------------------


def test_exp_golomb_round_trip() -> None:
    values = [0, 1, 2, 3, 6, 7, 8, 254, 255, 256, 65535, 2**31, 2**32 - 2]
    signed = [0, 1, -1, 2, -2, 127, -128, 2**20, -(2**20)]
    writer = BitWriter()
    for value in values:
        writer.ue(value)
    for value in signed:
        writer.se(value)
    writer.u(5, 0b10110)
    reader = BitReader(writer.rbsp())
    assert [reader.ue() for _ in values] == values
    assert [reader.se() for _ in signed] == signed
    assert reader.u(5) == 0b10110
    assert reader.u(1) == 1  # the stop bit


def test_reading_past_the_end_and_overlong_codes_are_errors() -> None:
    with pytest.raises(BitstreamError, match="truncated SPS"):
        BitReader(b"\xff").u(9)
    with pytest.raises(BitstreamError, match="exp-Golomb code too long"):
        BitReader(bytes(8)).ue()


def test_unescape_removes_every_emulation_prevention_byte() -> None:
    data = bytes.fromhex("4200 0003 01 aa 0000 0300 bb 0000 0303")
    assert _unescape(data) == bytes.fromhex("4200 0001 aa 0000 00bb 0000 03")
    assert _unescape(data, 3) == bytes.fromhex("420000")
    plain = bytes.fromhex("42c01eda")
    assert _unescape(plain) is plain  # nothing to remove: no copy


# --- frame size and crop -------------------------------------------------------------------


def test_baseline_320x240_at_30_without_chroma_fields() -> None:
    nal = sps_nal(SpsSpec(vui=TIMING_30))
    sps = parse_sps(nal)
    assert (sps.profile_idc, sps.constraint_flags, sps.level_idc) == (66, 0xC0, 30)
    assert (sps.chroma_format_idc, sps.bit_depth_luma, sps.bit_depth_chroma) == (1, 8, 8)
    assert not sps.seq_scaling_matrix_present
    assert (sps.pic_width_in_mbs, sps.pic_height_in_map_units, sps.crop) == (20, 15, (0, 0, 0, 0))
    assert (sps.width, sps.height) == (320, 240)
    assert sps.frame_rate == 30
    assert (sps.num_units_in_tick, sps.time_scale, sps.fixed_frame_rate) == (1, 60, True)
    assert sps.aspect_ratio_idc == 1
    assert sps.sar is None
    assert avc_codec_string(nal) == "avc1.42c01e"


def test_main_1080p_is_1088_coded_with_four_crop_units_at_the_bottom() -> None:
    spec = SpsSpec(
        profile_idc=77,
        constraint_flags=0x40,
        level_idc=40,
        seq_parameter_set_id=3,
        log2_max_frame_num=9,
        pic_order_cnt_type=1,
        delta_pic_order_always_zero=False,
        offset_for_non_ref_pic=-2,
        offset_for_top_to_bottom_field=3,
        offsets_for_ref_frame=(1, -1, 5),
        max_num_ref_frames=4,
        gaps_in_frame_num_allowed=True,
        pic_width_in_mbs=120,
        pic_height_in_map_units=68,
        direct_8x8_inference=False,
        crop=(0, 0, 0, 4),
        vui=Vui(timing=(1001, 60000, False)),
    )
    sps = parse_sps(sps_nal(spec))
    assert sps.coded_size == (1920, 1088)
    assert sps.crop_units == (2, 2)
    assert (sps.width, sps.height) == (1920, 1080)
    assert sps.frame_rate == Fraction(30000, 1001)
    assert sps.fixed_frame_rate is False
    assert (sps.seq_parameter_set_id, sps.log2_max_frame_num, sps.max_num_ref_frames) == (3, 9, 4)
    assert sps.gaps_in_frame_num_allowed
    assert not sps.direct_8x8_inference
    assert (sps.pic_order_cnt_type, sps.delta_pic_order_always_zero) == (1, False)
    assert (sps.offset_for_non_ref_pic, sps.offset_for_top_to_bottom_field) == (-2, 3)
    assert sps.offsets_for_ref_frame == (1, -1, 5)
    assert sps.log2_max_pic_order_cnt_lsb is None


def _ramp(size: int, start: int, step: int) -> list[int]:
    return [(start + step * i) % 255 + 1 for i in range(size)]


#: Every kind of scaling list: absent, "use the default" (a first 0), full lists with deltas that
#: wrap around 256 (8 → 255 is delta -9), and lists that stop early (a later 0).
SCALING_LISTS_420: list[list[int] | None] = [
    [0],  # Intra Y 4x4: use the default
    _ramp(16, 200, 37),  # big jumps both ways
    None,
    [16, 16, 0],  # 16, 16, then 16 repeated to the end
    [255, 1, 255, 1, *([7] * 12)],
    None,
    _ramp(64, 5, 91),  # Intra Y 8x8
    [20, 0],  # Inter Y 8x8: 20 for all 64
]


def test_high_profile_with_a_scaling_matrix_is_skipped_exactly() -> None:
    spec = SpsSpec(
        profile_idc=100,
        constraint_flags=0,
        level_idc=31,
        scaling_lists=SCALING_LISTS_420,
        pic_order_cnt_type=0,
        log2_max_pic_order_cnt_lsb=6,
        pic_width_in_mbs=80,
        pic_height_in_map_units=45,
        vui=Vui(aspect_ratio_idc=1, timing=(1, 50, True)),
    )
    sps = parse_sps(sps_nal(spec))
    assert sps.seq_scaling_matrix_present
    assert (sps.chroma_format_idc, sps.separate_colour_plane) == (1, False)
    assert (sps.pic_order_cnt_type, sps.log2_max_pic_order_cnt_lsb) == (0, 6)
    assert (sps.width, sps.height, sps.frame_rate) == (1280, 720, Fraction(25))
    assert (sps.num_units_in_tick, sps.time_scale) == (1, 50)


def test_high_444_reads_twelve_scaling_lists_and_crops_in_whole_pixels() -> None:
    lists = [*SCALING_LISTS_420, None, _ramp(64, 9, 13), [0], None]
    spec = SpsSpec(
        profile_idc=244,
        constraint_flags=0,
        chroma_format_idc=3,
        bit_depth_luma=10,
        bit_depth_chroma=12,
        qpprime_y_zero_transform_bypass=True,
        scaling_lists=lists,
        pic_width_in_mbs=27,
        pic_height_in_map_units=15,
        crop=(0, 7, 0, 1),
        vui=Vui(timing=(1, 100, True)),
    )
    sps = parse_sps(sps_nal(spec))
    assert (sps.bit_depth_luma, sps.bit_depth_chroma) == (10, 12)
    assert sps.qpprime_y_zero_transform_bypass
    assert sps.crop_units == (1, 1)
    assert (sps.width, sps.height, sps.frame_rate) == (425, 239, Fraction(50))


def test_separate_colour_planes_crop_like_monochrome() -> None:
    spec = SpsSpec(
        profile_idc=244,
        chroma_format_idc=3,
        separate_colour_plane=True,
        frame_mbs_only=False,
        pic_width_in_mbs=27,
        pic_height_in_map_units=8,
        crop=(1, 2, 1, 1),
        vui=TIMING_30,
    )
    sps = parse_sps(sps_nal(spec))
    assert (sps.chroma_array_type, sps.crop_units) == (0, (1, 2))
    assert (sps.width, sps.height) == (432 - 3, 256 - 4)


@pytest.mark.parametrize(
    ("chroma_format_idc", "frame_mbs_only", "units"),
    [(0, True, (1, 1)), (0, False, (1, 2)), (1, True, (2, 2)), (1, False, (2, 4)),
     (2, True, (2, 1)), (2, False, (2, 2)), (3, True, (1, 1)), (3, False, (1, 2))],
)  # fmt: skip
def test_crop_units_by_chroma_format_and_field_coding(
    chroma_format_idc: int, frame_mbs_only: bool, units: tuple[int, int]
) -> None:
    spec = SpsSpec(
        profile_idc=100,
        chroma_format_idc=chroma_format_idc,
        frame_mbs_only=frame_mbs_only,
        mb_adaptive_frame_field=not frame_mbs_only,
        pic_width_in_mbs=40,
        pic_height_in_map_units=12 if not frame_mbs_only else 23,
        crop=(1, 2, 0, 3),
    )
    sps = parse_sps(sps_nal(spec))
    assert sps.crop_units == units
    coded_height = 384 if not frame_mbs_only else 368
    assert sps.coded_size == (640, coded_height)
    assert (sps.width, sps.height) == (640 - 3 * units[0], coded_height - 3 * units[1])


def test_interlaced_420_640x360() -> None:
    spec = SpsSpec(
        profile_idc=77,
        constraint_flags=0x40,
        pic_order_cnt_type=0,
        frame_mbs_only=False,
        mb_adaptive_frame_field=True,
        pic_width_in_mbs=40,
        pic_height_in_map_units=12,
        crop=(0, 0, 0, 6),
        vui=Vui(aspect_ratio_idc=1, timing=(1, 50, False)),
    )
    sps = parse_sps(sps_nal(spec))
    assert not sps.frame_mbs_only
    assert sps.mb_adaptive_frame_field
    assert (sps.width, sps.height, sps.frame_rate) == (640, 360, Fraction(25))


def test_high_422_odd_height() -> None:
    spec = SpsSpec(
        profile_idc=122,
        chroma_format_idc=2,
        pic_width_in_mbs=27,
        pic_height_in_map_units=16,
        crop=(0, 3, 0, 15),
        vui=Vui(timing=(1, 30, True)),
    )
    sps = parse_sps(sps_nal(spec))
    assert (sps.width, sps.height, sps.frame_rate) == (426, 241, Fraction(15))


# --- VUI -----------------------------------------------------------------------------------


def test_extended_sar_and_every_vui_field_before_the_timing() -> None:
    vui = Vui(
        aspect_ratio_idc=255,
        sar=(4, 3),
        overscan_appropriate=True,
        video_signal=(5, True, (1, 13, 6)),
        chroma_sample_loc=(1, 2),
        timing=(1, 48, True),
        bitstream_restriction=True,
    )
    sps = parse_sps(sps_nal(SpsSpec(vui=vui)))
    assert (sps.aspect_ratio_idc, sps.sar) == (255, (4, 3))
    assert sps.overscan_appropriate is True
    assert (sps.video_format, sps.video_full_range, sps.colour_description) == (5, True, (1, 13, 6))
    assert sps.chroma_sample_loc == (1, 2)
    assert sps.frame_rate == 24
    assert (sps.width, sps.height) == (320, 240)


def test_video_signal_without_colour_description() -> None:
    sps = parse_sps(sps_nal(SpsSpec(vui=Vui(video_signal=(2, False, None), timing=(1, 60, True)))))
    assert (sps.video_format, sps.video_full_range, sps.colour_description) == (2, False, None)
    assert sps.frame_rate == 30


def test_no_vui_or_no_timing_info_has_no_frame_rate() -> None:
    bare = parse_sps(sps_nal(SpsSpec()))
    assert not bare.vui_present
    assert bare.frame_rate is None
    assert (bare.width, bare.height) == (320, 240)
    untimed = parse_sps(sps_nal(SpsSpec(vui=Vui(aspect_ratio_idc=1, bitstream_restriction=True))))
    assert untimed.vui_present
    assert untimed.aspect_ratio_idc == 1
    assert (untimed.num_units_in_tick, untimed.time_scale, untimed.frame_rate) == (None, None, None)
    zero_tick = parse_sps(sps_nal(SpsSpec(vui=Vui(timing=(0, 60, True)))))
    assert zero_tick.frame_rate is None


# --- emulation prevention ------------------------------------------------------------------


def test_emulation_prevention_bytes_in_the_timing_info_are_removed() -> None:
    # num_units_in_tick 1 and sar 0:256 are runs of zero bits: the escaped NAL has 03 bytes
    # well after the first three RBSP bytes (a prefix-only unescape would misread them).
    spec = SpsSpec(
        vui=Vui(aspect_ratio_idc=255, sar=(0, 1), timing=(1, 2 * 65536, True)),
    )
    rbsp, nal = sps_rbsp(spec), sps_nal(spec)
    assert nal.count(b"\x00\x00\x03") >= 2
    assert nal.find(b"\x00\x00\x03") > 4
    assert len(nal) > len(rbsp) + 1
    sps = parse_sps(nal)
    assert sps.sar == (0, 1)
    assert (sps.num_units_in_tick, sps.time_scale) == (1, 131072)
    assert sps.frame_rate == 65536
    assert escape(b"\x00\x00\x00\x00\x01") == b"\x00\x00\x03\x00\x00\x03\x01"


@pytest.mark.parametrize(
    ("hex_sps", "width", "height", "rate"),
    [
        # x264 (ffmpeg 5.1, ultrafast): constrained baseline 320x240 at 30 fps
        ("6742c00dda0507ec3840000003004000000f03c50aa8", 320, 240, 30),
        # constrained baseline 640x360 at 30000/1001 (crop_bottom 4)
        ("6742c01eda0280bfe5c04400000fa40003a9803c58ba80", 640, 360, Fraction(30000, 1001)),
        # High 4:4:4 Predictive 425x239 at 50
        ("67f40016919681b1fe22bff0ef00ef11000003000100000300640f162ea0", 425, 239, 50),
        # Main, interlaced (MBAFF) 640x360 at 25
        ("674d401ef405031f9f011000000300100000030321f142aa", 640, 360, 25),
        # High 10 640x360 at 60
        ("676e001fa6cb405017fcb80880000003008000003c078c1950", 640, 360, 60),
    ],
)
def test_real_x264_sps(hex_sps: str, width: int, height: int, rate: Fraction) -> None:
    sps = parse_sps(bytes.fromhex(hex_sps))
    assert (sps.width, sps.height, sps.frame_rate) == (width, height, rate)


# --- errors --------------------------------------------------------------------------------


def test_malformed_sps_are_errors() -> None:
    good = sps_nal(SpsSpec(vui=TIMING_30))
    with pytest.raises(BitstreamError, match="truncated SPS"):
        parse_sps(good[:6])
    with pytest.raises(BitstreamError, match="not an SPS"):
        parse_sps(b"\x68" + good[1:])
    with pytest.raises(BitstreamError, match="not an SPS"):
        parse_sps(b"")
    with pytest.raises(BitstreamError, match="forbidden_zero_bit"):
        parse_sps(b"\xe7" + good[1:])
    with pytest.raises(BitstreamError, match="profile_idc 0"):
        parse_sps(sps_nal(SpsSpec(profile_idc=0)))
    with pytest.raises(BitstreamError, match="chroma_format_idc 4"):
        parse_sps(sps_nal(SpsSpec(profile_idc=100, chroma_format_idc=4)))
    with pytest.raises(BitstreamError, match="pic_order_cnt_type 3"):
        parse_sps(sps_nal(SpsSpec(pic_order_cnt_type=3)))
    with pytest.raises(BitstreamError, match="seq_parameter_set_id 32"):
        parse_sps(sps_nal(SpsSpec(seq_parameter_set_id=32)))
    with pytest.raises(BitstreamError, match="crops its 320x240 frame away"):
        parse_sps(sps_nal(SpsSpec(crop=(80, 80, 0, 0))))
    with pytest.raises(BitstreamError, match="macroblock frame"):
        parse_sps(sps_nal(SpsSpec(pic_width_in_mbs=5000)))


def test_a_scaling_delta_out_of_range_is_an_error() -> None:
    writer = BitWriter()
    for value in (100, 0, 10):  # profile_idc High, constraints, level
        writer.u(8, value)
    writer.ue(0)  # seq_parameter_set_id
    writer.ue(1)  # chroma_format_idc
    writer.ue(0)
    writer.ue(0)
    writer.flag(False)
    writer.flag(True)  # seq_scaling_matrix_present_flag
    writer.flag(True)  # list 0 present
    writer.se(200)  # delta_scale beyond 127
    with pytest.raises(BitstreamError, match="scaling list delta of 200"):
        parse_sps(b"\x67" + escape(writer.rbsp()))


# --- the measurement hls takes from it -----------------------------------------------------


def test_video_from_sps() -> None:
    spec = SpsSpec(pic_width_in_mbs=54, pic_height_in_map_units=30, crop=(0, 5, 0, 0))
    spec.vui = Vui(timing=(1001, 48000, False))
    assert video_from_sps(sps_nal(spec)) == VideoInfo(854, 480, 24000 / 1001)
    spec.vui = Vui(aspect_ratio_idc=1)  # no timing info: ask ffprobe
    assert video_from_sps(sps_nal(spec)) is None
    spec.vui = Vui(timing=(1, 2 * 90000, False))  # a 1/90000 time base, not a frame rate
    assert video_from_sps(sps_nal(spec)) is None
    spec.vui = Vui(timing=(1, 2 * MAX_SPS_FRAME_RATE, False))
    assert video_from_sps(sps_nal(spec)) == VideoInfo(854, 480, float(MAX_SPS_FRAME_RATE))
    assert video_from_sps(b"\x67\x42") is None  # truncated: ask ffprobe
    assert video_from_sps(None) is None


def test_sps_is_a_frozen_value() -> None:
    sps = parse_sps(sps_nal(SpsSpec(vui=TIMING_30)))
    assert sps == parse_sps(sps_nal(SpsSpec(vui=TIMING_30)))
    assert isinstance(sps, Sps)
    with pytest.raises(AttributeError):
        sps.level_idc = 31  # type: ignore[misc]
