"""A tiny H.264 SPS writer for the tests: bits, exp-Golomb codes, emulation prevention.

Independent of :mod:`speak_encoder.pipeline.bitstream` (it shares no code with the parser it
checks): written from ITU-T H.264 §7.3.2.1.1 (seq_parameter_set_data), §7.3.2.1.1.1
(scaling_list) and Annex E.1.1 (vui_parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: profile_idc values whose SPS carries chroma_format_idc … seq_scaling_matrix_present_flag.
HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})


class BitWriter:
    """MSB-first bits; ``rbsp()`` appends the stop bit and pads to a byte."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, count: int, value: int) -> None:
        assert 0 <= value < (1 << count), (count, value)
        self.bits += [(value >> (count - 1 - i)) & 1 for i in range(count)]

    def flag(self, value: bool) -> None:
        self.u(1, int(value))

    def ue(self, value: int) -> None:
        assert value >= 0
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        self.u(code.bit_length(), code)

    def se(self, value: int) -> None:
        self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)  # rbsp_alignment_zero_bit
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def escape(rbsp: bytes) -> bytes:
    """Insert an emulation-prevention ``03`` before any byte ≤ 3 that follows ``00 00``."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


@dataclass
class Vui:
    aspect_ratio_idc: int | None = None
    sar: tuple[int, int] = (0, 0)  # written when aspect_ratio_idc == 255
    overscan_appropriate: bool | None = None
    #: (video_format, video_full_range_flag, (primaries, transfer, matrix) or None)
    video_signal: tuple[int, bool, tuple[int, int, int] | None] | None = None
    chroma_sample_loc: tuple[int, int] | None = None
    #: (num_units_in_tick, time_scale, fixed_frame_rate_flag)
    timing: tuple[int, int, bool] | None = None
    #: Write a bitstream_restriction() after the (absent) HRD parameters.
    bitstream_restriction: bool = False


@dataclass
class SpsSpec:
    """What to write; defaults: constrained baseline, 320x240, no VUI."""

    profile_idc: int = 66
    constraint_flags: int = 0xC0
    level_idc: int = 30
    seq_parameter_set_id: int = 0
    chroma_format_idc: int = 1
    separate_colour_plane: bool = False
    bit_depth_luma: int = 8
    bit_depth_chroma: int = 8
    qpprime_y_zero_transform_bypass: bool = False
    #: One entry per scaling list (8, or 12 for 4:4:4): None = not present, else its values in
    #: order; a 0 ends the list (0 first: "use the default list"; later: repeat the last value).
    scaling_lists: Sequence[Sequence[int] | None] | None = None
    log2_max_frame_num: int = 4
    pic_order_cnt_type: int = 2
    log2_max_pic_order_cnt_lsb: int = 4
    delta_pic_order_always_zero: bool = False
    offset_for_non_ref_pic: int = 0
    offset_for_top_to_bottom_field: int = 0
    offsets_for_ref_frame: Sequence[int] = ()
    max_num_ref_frames: int = 1
    gaps_in_frame_num_allowed: bool = False
    pic_width_in_mbs: int = 20
    pic_height_in_map_units: int = 15
    frame_mbs_only: bool = True
    mb_adaptive_frame_field: bool = False
    direct_8x8_inference: bool = True
    #: (left, right, top, bottom) in crop units, or None for frame_cropping_flag 0.
    crop: tuple[int, int, int, int] | None = None
    vui: Vui | None = field(default=None)


def _scaling_list(bits: BitWriter, values: Sequence[int], size: int) -> None:
    last = 8
    assert len(values) <= size
    for value in values:
        bits.se((value - last + 128) % 256 - 128)  # delta_scale in -128..127
        if value == 0:
            return
        last = value
    assert len(values) == size, "a list that does not end with 0 needs all its entries"


def _vui(bits: BitWriter, vui: Vui) -> None:
    bits.flag(vui.aspect_ratio_idc is not None)
    if vui.aspect_ratio_idc is not None:
        bits.u(8, vui.aspect_ratio_idc)
        if vui.aspect_ratio_idc == 255:
            bits.u(16, vui.sar[0])
            bits.u(16, vui.sar[1])
    bits.flag(vui.overscan_appropriate is not None)
    if vui.overscan_appropriate is not None:
        bits.flag(vui.overscan_appropriate)
    bits.flag(vui.video_signal is not None)
    if vui.video_signal is not None:
        video_format, full_range, colour = vui.video_signal
        bits.u(3, video_format)
        bits.flag(full_range)
        bits.flag(colour is not None)
        if colour is not None:
            for value in colour:
                bits.u(8, value)
    bits.flag(vui.chroma_sample_loc is not None)
    if vui.chroma_sample_loc is not None:
        bits.ue(vui.chroma_sample_loc[0])
        bits.ue(vui.chroma_sample_loc[1])
    bits.flag(vui.timing is not None)
    if vui.timing is not None:
        bits.u(32, vui.timing[0])
        bits.u(32, vui.timing[1])
        bits.flag(vui.timing[2])
    bits.flag(False)  # nal_hrd_parameters_present_flag
    bits.flag(False)  # vcl_hrd_parameters_present_flag
    bits.flag(False)  # pic_struct_present_flag
    bits.flag(vui.bitstream_restriction)
    if vui.bitstream_restriction:
        bits.flag(True)  # motion_vectors_over_pic_boundaries_flag
        for value in (2, 1, 16, 16, 0, 1):  # max_bytes_per_pic_denom … max_dec_frame_buffering
            bits.ue(value)


def sps_rbsp(spec: SpsSpec) -> bytes:
    """seq_parameter_set_rbsp() of ``spec`` (no NAL header, no emulation prevention)."""
    bits = BitWriter()
    bits.u(8, spec.profile_idc)
    bits.u(8, spec.constraint_flags)
    bits.u(8, spec.level_idc)
    bits.ue(spec.seq_parameter_set_id)
    if spec.profile_idc in HIGH_PROFILES:
        bits.ue(spec.chroma_format_idc)
        if spec.chroma_format_idc == 3:
            bits.flag(spec.separate_colour_plane)
        bits.ue(spec.bit_depth_luma - 8)
        bits.ue(spec.bit_depth_chroma - 8)
        bits.flag(spec.qpprime_y_zero_transform_bypass)
        bits.flag(spec.scaling_lists is not None)
        if spec.scaling_lists is not None:
            assert len(spec.scaling_lists) == (12 if spec.chroma_format_idc == 3 else 8)
            for index, values in enumerate(spec.scaling_lists):
                bits.flag(values is not None)
                if values is not None:
                    _scaling_list(bits, values, 16 if index < 6 else 64)
    bits.ue(spec.log2_max_frame_num - 4)
    bits.ue(spec.pic_order_cnt_type)
    if spec.pic_order_cnt_type == 0:
        bits.ue(spec.log2_max_pic_order_cnt_lsb - 4)
    elif spec.pic_order_cnt_type == 1:
        bits.flag(spec.delta_pic_order_always_zero)
        bits.se(spec.offset_for_non_ref_pic)
        bits.se(spec.offset_for_top_to_bottom_field)
        bits.ue(len(spec.offsets_for_ref_frame))
        for offset in spec.offsets_for_ref_frame:
            bits.se(offset)
    bits.ue(spec.max_num_ref_frames)
    bits.flag(spec.gaps_in_frame_num_allowed)
    bits.ue(spec.pic_width_in_mbs - 1)
    bits.ue(spec.pic_height_in_map_units - 1)
    bits.flag(spec.frame_mbs_only)
    if not spec.frame_mbs_only:
        bits.flag(spec.mb_adaptive_frame_field)
    bits.flag(spec.direct_8x8_inference)
    bits.flag(spec.crop is not None)
    if spec.crop is not None:
        for offset in spec.crop:
            bits.ue(offset)
    bits.flag(spec.vui is not None)
    if spec.vui is not None:
        _vui(bits, spec.vui)
    return bits.rbsp()


def sps_nal(spec: SpsSpec) -> bytes:
    """The SPS NAL unit of ``spec``: header byte 0x67 (nal_ref_idc 3, type 7), escaped RBSP."""
    return b"\x67" + escape(sps_rbsp(spec))


__all__ = ["BitWriter", "SpsSpec", "Vui", "escape", "sps_nal", "sps_rbsp"]
