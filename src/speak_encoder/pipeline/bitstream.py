"""Bounded reads of the start of an MPEG-TS segment: first video access unit, codec strings.

Only the first few packets of a segment are read (never more than ``max_bytes``, 2 MiB by
default), 188-byte packets starting with the sync byte ``0x47``::

    PAT (PID 0) ─► PMT ─► H.264 video PID (stream_type 0x1B), AAC/ADTS audio PID (0x0F)
    first video PES (reassembled) ─► Annex-B NAL units of the first access unit
        ├── first VCL NAL (types 1–5): type 5 = IDR → "segment starts with a keyframe"
        └── SPS (type 7): profile_idc, constraint flags, level_idc → "avc1.PPCCLL";
            parsed whole (parse_sps, up to the VUI timing info) → width, height, frame rate
    first audio PES ─► ADTS header ─► audio object type → "mp4a.40.<aot>"

The parser (:class:`TsScanner`) is pure and fed with bytes; :func:`scan_segment` is the thin
file reader around it. By default scanning stops as soon as the first VCL NAL is known (and the
audio header, when asked for), which for an IDR frame is within the first few packets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

#: Size of one MPEG-TS packet.
TS_PACKET_SIZE = 188
#: Sync byte every TS packet starts with.
TS_SYNC_BYTE = 0x47
#: Upper bound of bytes read from one segment.
DEFAULT_MAX_BYTES = 2 * 1024 * 1024
#: Bytes per read when scanning a file (a multiple of the packet size).
READ_CHUNK = 64 * TS_PACKET_SIZE
#: PMT stream types this module understands.
STREAM_TYPE_H264 = 0x1B
STREAM_TYPE_AAC_ADTS = 0x0F
#: H.264 NAL unit types used here.
NAL_IDR = 5
NAL_SPS = 7
NAL_AUD = 9
VCL_NAL_TYPES = frozenset(range(1, 6))
#: Cap on the reassembled first video PES (a 1080p IDR frame is a few hundred KiB).
_MAX_PES_BYTES = DEFAULT_MAX_BYTES


class BitstreamError(ValueError):
    """The bytes are not the MPEG-TS / H.264 / ADTS stream they should be."""


@dataclass(frozen=True, slots=True)
class SegmentStart:
    """What the start of a segment says about its streams."""

    video_pid: int | None
    audio_pid: int | None
    #: PMT stream_type of the video stream (0x1B = H.264), if any.
    video_stream_type: int | None
    #: NAL unit types of the first access unit, in order (up to the first VCL NAL unless the
    #: whole access unit was asked for).
    nal_types: tuple[int, ...]
    #: The first SPS NAL unit (header byte included), if the first access unit has one.
    sps: bytes | None
    #: Audio object type from the first ADTS header (2 = AAC-LC), if audio was read.
    aac_object_type: int | None
    bytes_read: int

    @property
    def first_vcl_nal_type(self) -> int | None:
        return next((t for t in self.nal_types if t in VCL_NAL_TYPES), None)

    @property
    def starts_with_idr(self) -> bool:
        """True when the first coded slice of the segment is an IDR slice (NAL type 5)."""
        return self.first_vcl_nal_type == NAL_IDR

    @property
    def video_codec(self) -> str | None:
        """``avc1.PPCCLL`` from the SPS, or ``None`` without one."""
        return avc_codec_string(self.sps) if self.sps is not None else None

    @property
    def audio_codec(self) -> str | None:
        """``mp4a.40.<aot>`` from the ADTS header, or ``None`` without audio."""
        return None if self.aac_object_type is None else f"mp4a.40.{self.aac_object_type}"

    @property
    def codecs(self) -> str:
        """The ``CODECS`` attribute value for this stream: ``avc1.…[,mp4a.40.…]``."""
        return ",".join(c for c in (self.video_codec, self.audio_codec) if c)


# --- H.264 / AAC ---------------------------------------------------------------------------


def split_annexb(data: bytes) -> list[bytes]:
    """Split an Annex-B byte stream at its start codes; each item starts with the NAL header."""
    nals: list[bytes] = []
    start = _next_start_code(data, 0)
    while start is not None:
        begin = start[1]
        following = _next_start_code(data, begin)
        end = following[0] if following is not None else len(data)
        nal = data[begin:end].rstrip(b"\x00") if following is not None else data[begin:end]
        if nal:
            nals.append(nal)
        start = following
    return nals


def _next_start_code(data: bytes, pos: int) -> tuple[int, int] | None:
    """(index of the start code, index after it) of the next ``00 00 01`` from ``pos``."""
    index = data.find(b"\x00\x00\x01", pos)
    if index < 0:
        return None
    return index, index + 3


def nal_type(nal: bytes) -> int:
    """``nal_unit_type`` of a NAL unit (header byte first); a set forbidden bit is an error."""
    if not nal:
        raise BitstreamError("empty NAL unit")
    if nal[0] & 0x80:
        raise BitstreamError("NAL unit with forbidden_zero_bit set (not H.264)")
    return nal[0] & 0x1F


def _unescape(data: bytes, limit: int | None = None) -> bytes:
    """RBSP of ``data``: every emulation-prevention ``03`` after ``00 00`` removed.

    The whole of ``data`` by default; with ``limit``, only the first ``limit`` RBSP bytes.
    """
    if b"\x00\x00\x03" not in data:
        return data if limit is None else data[:limit]
    out = bytearray()
    zeros = 0
    for byte in data:
        if zeros >= 2 and byte == 0x03:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
        if limit is not None and len(out) >= limit:
            break
    return bytes(out)


def avc_codec_string(sps: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL`` from an SPS NAL unit (header byte included)."""
    if not sps or nal_type(sps) != NAL_SPS:
        raise BitstreamError("not an SPS NAL unit")
    rbsp = _unescape(sps[1:], 3)
    if len(rbsp) < 3:
        raise BitstreamError("truncated SPS")
    profile_idc, constraints, level_idc = rbsp[0], rbsp[1], rbsp[2]
    if profile_idc == 0:
        raise BitstreamError("SPS with profile_idc 0")
    return f"avc1.{profile_idc:02x}{constraints:02x}{level_idc:02x}"


#: profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling matrices
#: (ITU-T H.264 §7.3.2.1.1: High, High 10/4:2:2/4:4:4, CAVLC 4:4:4, SVC, MVC and their kin).
CHROMA_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
#: aspect_ratio_idc meaning "sar_width and sar_height follow" (Annex E, Table E-1).
EXTENDED_SAR = 255
#: (SubWidthC, SubHeightC) by chroma_format_idc (Table 6-1); 0 = monochrome.
_CHROMA_SUBSAMPLING = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}
#: Largest exp-Golomb prefix accepted (32 leading zeros would exceed 2^32 - 2, the syntax maximum).
_MAX_EXP_GOLOMB_ZEROS = 31
#: Largest frame dimension in macroblocks accepted (32768 pixels; level 6.2 allows ~1055).
_MAX_MBS = 2048


class BitReader:
    """MSB-first reads of an RBSP: fixed-width fields, ``ue(v)`` and ``se(v)`` exp-Golomb codes.

    Reading past the end raises :class:`BitstreamError` ("truncated ...").
    """

    __slots__ = ("_bits", "_pos", "_value", "what")

    def __init__(self, rbsp: bytes, what: str = "SPS") -> None:
        self._value = int.from_bytes(rbsp, "big")
        self._bits = len(rbsp) * 8
        self._pos = 0
        self.what = what

    def u(self, count: int) -> int:
        """The next ``count`` bits as an unsigned integer (``u(n)``)."""
        end = self._pos + count
        if end > self._bits:
            raise BitstreamError(f"truncated {self.what}")
        self._pos = end
        return (self._value >> (self._bits - end)) & ((1 << count) - 1)

    def flag(self) -> bool:
        return self.u(1) == 1

    def ue(self) -> int:
        """Unsigned exp-Golomb ``ue(v)``: ``n`` zero bits, a one, ``n`` more bits → 2^n - 1 + x."""
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > _MAX_EXP_GOLOMB_ZEROS:
                raise BitstreamError(f"exp-Golomb code too long in {self.what}")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        """Signed exp-Golomb ``se(v)``: 1, -1, 2, -2, … for code numbers 1, 2, 3, 4, …"""
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


@dataclass(frozen=True, slots=True)
class Sps:
    """An H.264 sequence parameter set (§7.3.2.1.1) up to the VUI timing information (E.1.1).

    The VUI's HRD parameters and bitstream restrictions, which follow the timing information,
    are not read. Scaling lists are read only to be skipped.
    """

    profile_idc: int
    constraint_flags: int
    level_idc: int
    seq_parameter_set_id: int
    chroma_format_idc: int
    separate_colour_plane: bool
    bit_depth_luma: int
    bit_depth_chroma: int
    qpprime_y_zero_transform_bypass: bool
    seq_scaling_matrix_present: bool
    log2_max_frame_num: int
    pic_order_cnt_type: int
    #: pic_order_cnt_type 0: log2_max_pic_order_cnt_lsb.
    log2_max_pic_order_cnt_lsb: int | None
    #: pic_order_cnt_type 1: delta_pic_order_always_zero_flag, offset_for_non_ref_pic,
    #: offset_for_top_to_bottom_field and offset_for_ref_frame[] (one per frame of the cycle).
    delta_pic_order_always_zero: bool | None
    offset_for_non_ref_pic: int | None
    offset_for_top_to_bottom_field: int | None
    offsets_for_ref_frame: tuple[int, ...] | None
    max_num_ref_frames: int
    gaps_in_frame_num_allowed: bool
    pic_width_in_mbs: int
    pic_height_in_map_units: int
    frame_mbs_only: bool
    mb_adaptive_frame_field: bool
    direct_8x8_inference: bool
    #: (left, right, top, bottom) frame_crop offsets, in crop units (see :attr:`crop_units`).
    crop: tuple[int, int, int, int]
    vui_present: bool
    aspect_ratio_idc: int | None = None
    #: (sar_width, sar_height) of an Extended_SAR (aspect_ratio_idc 255).
    sar: tuple[int, int] | None = None
    overscan_appropriate: bool | None = None
    video_format: int | None = None
    video_full_range: bool | None = None
    #: (colour_primaries, transfer_characteristics, matrix_coefficients).
    colour_description: tuple[int, int, int] | None = None
    #: (chroma_sample_loc_type_top_field, chroma_sample_loc_type_bottom_field).
    chroma_sample_loc: tuple[int, int] | None = None
    num_units_in_tick: int | None = None
    time_scale: int | None = None
    fixed_frame_rate: bool | None = None

    @property
    def chroma_array_type(self) -> int:
        return 0 if self.separate_colour_plane else self.chroma_format_idc

    @property
    def crop_units(self) -> tuple[int, int]:
        """(CropUnitX, CropUnitY) of equations 7-19 to 7-22."""
        fields = 1 if self.frame_mbs_only else 2
        if self.chroma_array_type == 0:
            return 1, fields
        sub_width, sub_height = _CHROMA_SUBSAMPLING[self.chroma_format_idc]
        return sub_width, sub_height * fields

    @property
    def coded_size(self) -> tuple[int, int]:
        """Width and height of the decoded frame before cropping (multiples of 16)."""
        map_unit_rows = 1 if self.frame_mbs_only else 2
        return self.pic_width_in_mbs * 16, self.pic_height_in_map_units * map_unit_rows * 16

    @property
    def width(self) -> int:
        """Output width: the coded width minus the left and right crop."""
        unit_x, _ = self.crop_units
        return self.coded_size[0] - unit_x * (self.crop[0] + self.crop[1])

    @property
    def height(self) -> int:
        """Output (frame) height: the coded height minus the top and bottom crop."""
        _, unit_y = self.crop_units
        return self.coded_size[1] - unit_y * (self.crop[2] + self.crop[3])

    @property
    def frame_rate(self) -> Fraction | None:
        """time_scale / (2 × num_units_in_tick): one frame lasts two clock ticks (E.2.1,
        DeltaTfiDivisor 2 for a frame), as x264 writes it; ``None`` without timing info."""
        if not self.num_units_in_tick or not self.time_scale:
            return None
        return Fraction(self.time_scale, 2 * self.num_units_in_tick)


def parse_sps(nal: bytes) -> Sps:
    """Parse an SPS NAL unit (header byte included; emulation prevention removed here).

    Raises :class:`BitstreamError` for a NAL unit that is not an SPS, one that ends early, and
    values the syntax forbids (chroma_format_idc > 3, a crop as large as the frame, …).
    """
    if not nal or nal_type(nal) != NAL_SPS:
        raise BitstreamError("not an SPS NAL unit")
    bits = BitReader(_unescape(nal[1:]))
    profile_idc, constraint_flags, level_idc = bits.u(8), bits.u(8), bits.u(8)
    if profile_idc == 0:
        raise BitstreamError("SPS with profile_idc 0")
    sps_id = bits.ue()
    if sps_id > 31:
        raise BitstreamError(f"SPS with seq_parameter_set_id {sps_id} (at most 31)")
    chroma_format_idc, separate_planes, depth_luma, depth_chroma = 1, False, 8, 8
    bypass = scaling = False
    if profile_idc in CHROMA_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc > 3:
            raise BitstreamError(f"SPS with chroma_format_idc {chroma_format_idc}")
        separate_planes = chroma_format_idc == 3 and bits.flag()
        depth_luma, depth_chroma = 8 + bits.ue(), 8 + bits.ue()
        if depth_luma > 14 or depth_chroma > 14:
            raise BitstreamError("SPS with a bit depth above 14")
        bypass = bits.flag()
        scaling = bits.flag()
        if scaling:
            for index in range(8 if chroma_format_idc != 3 else 12):
                if bits.flag():  # seq_scaling_list_present_flag[index]
                    _skip_scaling_list(bits, 16 if index < 6 else 64)
    log2_max_frame_num = 4 + bits.ue()
    if log2_max_frame_num > 16:
        raise BitstreamError("SPS with log2_max_frame_num above 16")
    poc_type = bits.ue()
    poc_lsb = always_zero = non_ref = top_to_bottom = ref_offsets = None
    if poc_type == 0:
        poc_lsb = 4 + bits.ue()
        if poc_lsb > 16:
            raise BitstreamError("SPS with log2_max_pic_order_cnt_lsb above 16")
    elif poc_type == 1:
        always_zero, non_ref, top_to_bottom = bits.flag(), bits.se(), bits.se()
        cycle = bits.ue()  # num_ref_frames_in_pic_order_cnt_cycle
        if cycle > 255:
            raise BitstreamError("SPS with more than 255 frames in its POC cycle")
        ref_offsets = tuple(bits.se() for _ in range(cycle))
    elif poc_type != 2:
        raise BitstreamError(f"SPS with pic_order_cnt_type {poc_type}")
    max_ref_frames = bits.ue()
    gaps = bits.flag()
    width_mbs, height_map_units = bits.ue() + 1, bits.ue() + 1
    if width_mbs > _MAX_MBS or height_map_units > _MAX_MBS:
        raise BitstreamError(f"SPS with a {width_mbs}x{height_map_units} macroblock frame")
    frame_mbs_only = bits.flag()
    mb_adaptive = not frame_mbs_only and bits.flag()
    direct_8x8 = bits.flag()
    crop = (0, 0, 0, 0)
    if bits.flag():  # frame_cropping_flag
        crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue())
    sps = Sps(
        profile_idc=profile_idc,
        constraint_flags=constraint_flags,
        level_idc=level_idc,
        seq_parameter_set_id=sps_id,
        chroma_format_idc=chroma_format_idc,
        separate_colour_plane=separate_planes,
        bit_depth_luma=depth_luma,
        bit_depth_chroma=depth_chroma,
        qpprime_y_zero_transform_bypass=bypass,
        seq_scaling_matrix_present=scaling,
        log2_max_frame_num=log2_max_frame_num,
        pic_order_cnt_type=poc_type,
        log2_max_pic_order_cnt_lsb=poc_lsb,
        delta_pic_order_always_zero=always_zero,
        offset_for_non_ref_pic=non_ref,
        offset_for_top_to_bottom_field=top_to_bottom,
        offsets_for_ref_frame=ref_offsets,
        max_num_ref_frames=max_ref_frames,
        gaps_in_frame_num_allowed=gaps,
        pic_width_in_mbs=width_mbs,
        pic_height_in_map_units=height_map_units,
        frame_mbs_only=frame_mbs_only,
        mb_adaptive_frame_field=mb_adaptive,
        direct_8x8_inference=direct_8x8,
        crop=crop,
        vui_present=bits.flag(),
    )
    if sps.width <= 0 or sps.height <= 0:
        raise BitstreamError(f"SPS crops its {sps.coded_size[0]}x{sps.coded_size[1]} frame away")
    return _with_vui(sps, bits) if sps.vui_present else sps


def _skip_scaling_list(bits: BitReader, size: int) -> None:
    """Read past one scaling_list() of ``size`` entries (§7.3.2.1.1.1).

    One delta_scale per entry until nextScale becomes 0 (at the first entry: "use the default
    list"; later: the last value repeats to the end), after which nothing more is coded.
    """
    last = 8
    for _ in range(size):
        delta = bits.se()
        if not -128 <= delta <= 127:
            raise BitstreamError(f"SPS with a scaling list delta of {delta}")
        following = (last + delta + 256) % 256
        if following == 0:
            return
        last = following


def _with_vui(sps: Sps, bits: BitReader) -> Sps:
    """``sps`` with the vui_parameters() fields up to the timing information (E.1.1)."""
    aspect_ratio_idc = sar = overscan = video_format = full_range = None
    colour = chroma_loc = None
    if bits.flag():  # aspect_ratio_info_present_flag
        aspect_ratio_idc = bits.u(8)
        if aspect_ratio_idc == EXTENDED_SAR:
            sar = (bits.u(16), bits.u(16))
    if bits.flag():  # overscan_info_present_flag
        overscan = bits.flag()
    if bits.flag():  # video_signal_type_present_flag
        video_format, full_range = bits.u(3), bits.flag()
        if bits.flag():  # colour_description_present_flag
            colour = (bits.u(8), bits.u(8), bits.u(8))
    if bits.flag():  # chroma_loc_info_present_flag
        chroma_loc = (bits.ue(), bits.ue())
    units = scale = fixed = None
    if bits.flag():  # timing_info_present_flag
        units, scale, fixed = bits.u(32), bits.u(32), bits.flag()
    return replace(
        sps,
        aspect_ratio_idc=aspect_ratio_idc,
        sar=sar,
        overscan_appropriate=overscan,
        video_format=video_format,
        video_full_range=full_range,
        colour_description=colour,
        chroma_sample_loc=chroma_loc,
        num_units_in_tick=units,
        time_scale=scale,
        fixed_frame_rate=fixed,
    )


def adts_object_type(data: bytes) -> int:
    """MPEG-4 audio object type (2 = AAC-LC) from an ADTS header at the start of ``data``."""
    if len(data) < 7:
        raise BitstreamError("truncated ADTS header")
    if data[0] != 0xFF or data[1] & 0xF6 != 0xF0:
        raise BitstreamError("audio does not start with an ADTS header")
    return ((data[2] >> 6) & 0x03) + 1


def _first_access_unit(nals: Iterable[bytes]) -> list[bytes]:
    """NAL units of the first access unit: stop at an AUD that follows a VCL NAL."""
    unit: list[bytes] = []
    seen_vcl = False
    for nal in nals:
        kind = nal_type(nal)
        if seen_vcl and kind == NAL_AUD:
            break
        seen_vcl = seen_vcl or kind in VCL_NAL_TYPES
        unit.append(nal)
    return unit


# --- MPEG-TS -------------------------------------------------------------------------------


def _pes_payload(pes: bytes) -> bytes | None:
    """Elementary-stream payload of a PES packet, or ``None`` while its header is incomplete."""
    if len(pes) < 9:
        return None
    if pes[:3] != b"\x00\x00\x01":
        raise BitstreamError("PES packet without a start code prefix")
    header_end = 9 + pes[8]
    if len(pes) < header_end:
        return None
    return pes[header_end:]


@dataclass(slots=True)
class _Section:
    data: bytearray = field(default_factory=bytearray)

    def feed(self, payload: bytes, unit_start: bool) -> bytes | None:
        """Accumulate a PSI section; return it once complete (without the pointer field)."""
        if unit_start:
            pointer = payload[0] if payload else 0
            self.data = bytearray(payload[1 + pointer :])
        elif not self.data:
            return None
        else:
            self.data += payload
        if len(self.data) < 3:
            return None
        length = 3 + (((self.data[1] & 0x0F) << 8) | self.data[2])
        return bytes(self.data[:length]) if len(self.data) >= length else None


@dataclass(slots=True)
class TsScanner:
    """Incremental, pure MPEG-TS reader of a segment's first access unit and audio header.

    Feed bytes with :meth:`feed` until it returns ``True`` (nothing more needed) or the input
    ends; then :meth:`result`. ``want_audio`` also waits for the first ADTS header;
    ``whole_access_unit`` reads the full first video PES instead of stopping at its first VCL
    NAL unit.
    """

    want_audio: bool = True
    whole_access_unit: bool = False
    max_pes_bytes: int = _MAX_PES_BYTES
    _pending: bytes = b""
    _bytes: int = 0
    _pat: _Section = field(default_factory=_Section)
    _pmt: _Section = field(default_factory=_Section)
    _pmt_pid: int | None = None
    _have_pmt: bool = False
    _video_pid: int | None = None
    _video_type: int | None = None
    _audio_pid: int | None = None
    _video_pes: bytearray | None = None
    _video_done: bool = False
    _audio_pes: bytearray | None = None
    _aot: int | None = None
    _scan_pos: int = 0
    _packets: int = 0

    def feed(self, data: bytes) -> bool:
        """Consume ``data``; True once everything asked for is known."""
        buffer = self._pending + data
        self._bytes += len(data)
        usable = len(buffer) - len(buffer) % TS_PACKET_SIZE
        for offset in range(0, usable, TS_PACKET_SIZE):
            self._packet(buffer[offset : offset + TS_PACKET_SIZE])
            if self.done:
                self._pending = b""
                return True
        self._pending = buffer[usable:]
        return False

    @property
    def done(self) -> bool:
        if not self._have_pmt:
            return False
        video_done = self._video_pid is None or self._video_done or self._enough_video()
        audio_done = not self.want_audio or self._audio_pid is None or self._aot is not None
        return video_done and audio_done

    def _enough_video(self) -> bool:
        """True once the first VCL NAL unit's header byte has arrived (incremental search)."""
        if self.whole_access_unit or self._video_pes is None or len(self._video_pes) < 9:
            return False
        pes = self._video_pes
        begin = max(self._scan_pos, 9 + pes[8])
        while (index := pes.find(b"\x00\x00\x01", begin)) >= 0:
            if index + 3 >= len(pes):
                self._scan_pos = index  # its header byte is in the next packet
                return False
            header = pes[index + 3]
            if header < 0x80 and header & 0x1F in VCL_NAL_TYPES:
                return True
            begin = index + 3
        self._scan_pos = max(begin, len(pes) - 2)
        return False

    def _packet(self, packet: bytes) -> None:
        self._packets += 1
        if packet[0] != TS_SYNC_BYTE:
            raise BitstreamError(
                f"lost MPEG-TS sync at packet {self._packets} (byte 0x{packet[0]:02x})"
            )
        unit_start = bool(packet[1] & 0x40)
        pid = ((packet[1] & 0x1F) << 8) | packet[2]
        control = (packet[3] >> 4) & 0x03
        if not control & 0x01:
            return  # adaptation field only, no payload
        start = 4
        if control & 0x02:
            start += 1 + packet[4]
        if start >= TS_PACKET_SIZE:
            return
        self._route(pid, packet[start:], unit_start)

    def _route(self, pid: int, payload: bytes, unit_start: bool) -> None:
        if pid == 0:
            section = self._pat.feed(payload, unit_start)
            if section is not None and self._pmt_pid is None:
                self._pmt_pid = _parse_pat(section)
        elif pid == self._pmt_pid:
            section = self._pmt.feed(payload, unit_start)
            if section is not None and not self._have_pmt:
                self._video_pid, self._video_type, self._audio_pid = _parse_pmt(section)
                self._have_pmt = True
        elif pid == self._video_pid and self._video_pid is not None:
            self._video(payload, unit_start)
        elif pid == self._audio_pid and self._audio_pid is not None and self.want_audio:
            self._audio(payload, unit_start)

    def _video(self, payload: bytes, unit_start: bool) -> None:
        if self._video_done:
            return
        if unit_start:
            if self._video_pes is not None:
                self._video_done = True  # the next PES begins: the first one is complete
                return
            self._video_pes = bytearray()
        if self._video_pes is None:
            return  # continuation of a PES that began in an earlier segment
        self._video_pes += payload
        if len(self._video_pes) > self.max_pes_bytes:
            self._video_done = True

    def _audio(self, payload: bytes, unit_start: bool) -> None:
        if self._aot is not None:
            return
        if unit_start:
            self._audio_pes = bytearray()
        if self._audio_pes is None:
            return
        self._audio_pes += payload
        es = _pes_payload(bytes(self._audio_pes))
        if es is not None and len(es) >= 7:
            self._aot = adts_object_type(es)

    def result(self) -> SegmentStart:
        """What has been learned so far (call after :meth:`feed` returned True or at EOF)."""
        if self._pmt_pid is None:
            raise BitstreamError("no PAT found: not an MPEG-TS segment")
        if not self._have_pmt:
            raise BitstreamError("no PMT found in the segment")
        nals: list[bytes] = []
        if self._video_pes is not None and self._video_type == STREAM_TYPE_H264:
            payload = _pes_payload(bytes(self._video_pes))
            nals = _first_access_unit(split_annexb(payload or b""))
            if not self.whole_access_unit:
                nals = _through_first_vcl(nals)
        sps = next((nal for nal in nals if nal_type(nal) == NAL_SPS), None)
        return SegmentStart(
            video_pid=self._video_pid,
            audio_pid=self._audio_pid,
            video_stream_type=self._video_type,
            nal_types=tuple(nal_type(nal) for nal in nals),
            sps=sps,
            aac_object_type=self._aot,
            bytes_read=self._bytes,
        )


def _through_first_vcl(nals: list[bytes]) -> list[bytes]:
    for index, nal in enumerate(nals):
        if nal_type(nal) in VCL_NAL_TYPES:
            return nals[: index + 1]
    return nals


def _parse_pat(section: bytes) -> int | None:
    """PID of the first program's PMT."""
    if section[0] != 0x00:
        raise BitstreamError(f"PID 0 carries table 0x{section[0]:02x}, not a PAT")
    entries = section[8:-4]
    for offset in range(0, len(entries) - 3, 4):
        program = (entries[offset] << 8) | entries[offset + 1]
        if program != 0:
            return ((entries[offset + 2] & 0x1F) << 8) | entries[offset + 3]
    raise BitstreamError("PAT lists no program")


def _parse_pmt(section: bytes) -> tuple[int | None, int | None, int | None]:
    """(video PID, video stream_type, AAC audio PID) of a PMT section."""
    if section[0] != 0x02 or len(section) < 16:
        raise BitstreamError("malformed PMT")
    info_length = ((section[10] & 0x0F) << 8) | section[11]
    pos, end = 12 + info_length, len(section) - 4
    video: tuple[int, int] | None = None
    audio: int | None = None
    while pos + 5 <= end:
        stream_type = section[pos]
        pid = ((section[pos + 1] & 0x1F) << 8) | section[pos + 2]
        es_info = ((section[pos + 3] & 0x0F) << 8) | section[pos + 4]
        if video is None and stream_type in (STREAM_TYPE_H264, 0x24, 0x02, 0x10):
            video = (pid, stream_type)
        elif audio is None and stream_type == STREAM_TYPE_AAC_ADTS:
            audio = pid
        pos += 5 + es_info
    return (video[0] if video else None), (video[1] if video else None), audio


# --- I/O -----------------------------------------------------------------------------------


def scan_bytes(
    data: bytes, *, want_audio: bool = True, whole_access_unit: bool = False
) -> SegmentStart:
    """Scan an in-memory TS segment start (tests, small buffers)."""
    scanner = TsScanner(want_audio=want_audio, whole_access_unit=whole_access_unit)
    scanner.feed(data)
    return scanner.result()


def scan_segment(
    path: Path,
    *,
    want_audio: bool = True,
    whole_access_unit: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> SegmentStart:
    """Read the start of the TS segment at ``path`` (at most ``max_bytes``) and scan it.

    Raises :class:`BitstreamError` for bytes that are not MPEG-TS and :class:`OSError` when
    the file cannot be read.
    """
    scanner = TsScanner(want_audio=want_audio, whole_access_unit=whole_access_unit)
    remaining = max_bytes
    with path.open("rb") as handle:
        while remaining > 0:
            chunk = handle.read(min(READ_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            if scanner.feed(chunk):
                break
    return scanner.result()


__all__ = [
    "DEFAULT_MAX_BYTES",
    "NAL_IDR",
    "NAL_SPS",
    "VCL_NAL_TYPES",
    "BitReader",
    "BitstreamError",
    "SegmentStart",
    "Sps",
    "TsScanner",
    "adts_object_type",
    "avc_codec_string",
    "nal_type",
    "parse_sps",
    "scan_bytes",
    "scan_segment",
    "split_annexb",
]
