"""The poster chosen from the stats the encode printed, and the fallback when they do not fit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from speak_encoder.pipeline import poster
from speak_encoder.pipeline.extras import POSTER_NAME, POSTER_STATS_NAME
from speak_encoder.pipeline.ffmpeg import filter_value
from speak_encoder.pipeline.poster import Candidate, make_poster, read_stats

#: (YAVG, blur) of each candidate; YLOW 20 and YHIGH 200 for all (contrast 180).
FRAMES = [(16.0, 1.0), (120.0, 6.0), (118.0, 3.5), (121.0, 4.0)]


def block(number: int, luma: float, blur: float) -> str:
    """One frame as ffmpeg 5.1's ``metadata=mode=print`` writes it (a few keys left out)."""
    return (
        f"frame:{number:<4} pts:{number:<7} pts_time:{number / 30:g}\n"
        "lavfi.signalstats.YMIN=0\nlavfi.signalstats.YLOW=20\n"
        f"lavfi.signalstats.YAVG={luma:g}\nlavfi.signalstats.YHIGH=200\n"
        f"lavfi.signalstats.YMAX=255\nlavfi.signalstats.UAVG=128\nlavfi.blur={blur:g}\n"
    )


def stats_text(frames: list[tuple[float, float]] = FRAMES) -> str:
    return "".join(block(n, luma, blur) for n, (luma, blur) in enumerate(frames))


def folder_with(tmp_path: Path, count: int = len(FRAMES), stats: str | None = None) -> Path:
    for n in range(count):
        (tmp_path / f".poster-{n}.jpg").write_bytes(b"\xff\xd8 candidate %d" % n)
    if stats is not None:
        (tmp_path / POSTER_STATS_NAME).write_text(stats)
    return tmp_path


def test_the_stats_describe_each_candidate_by_its_number(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, stats=stats_text())
    found = read_stats(folder)
    assert found == [
        Candidate(folder / f".poster-{n}.jpg", luma, 20.0, 200.0, blur)
        for n, (luma, blur) in enumerate(FRAMES)
    ]


def test_more_blocks_than_files_still_describe_the_files(tmp_path: Path) -> None:
    """A run stopped after measuring a frame, before writing its JPEG."""
    folder = folder_with(tmp_path, count=2, stats=stats_text())
    found = read_stats(folder)
    assert found is not None
    assert [(c.path.name, c.luma) for c in found] == [
        (".poster-0.jpg", 16.0),
        (".poster-1.jpg", 120.0),
    ]


@pytest.mark.parametrize(
    "stats",
    [
        None,  # encoded by a version that did not print them
        "",  # a run killed before ffmpeg flushed the file
        stats_text(FRAMES[:3]),  # fewer blocks than candidates
        stats_text().replace("lavfi.blur=4\n", ""),  # the last block is incomplete
        stats_text().replace("frame:2 ", "frame:7 "),  # not numbered like the files
        stats_text() + "x" * 70_000,  # not ours: too large to be six blocks
    ],
    ids=["missing", "empty", "short", "incomplete", "renumbered", "huge"],
)
def test_stats_that_do_not_fit_are_refused(tmp_path: Path, stats: str | None) -> None:
    assert read_stats(folder_with(tmp_path, stats=stats)) is None


def test_a_gap_in_the_candidates_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, stats=stats_text())
    (folder / ".poster-1.jpg").unlink()
    assert read_stats(folder) is None


def test_an_unreadable_stats_file_is_refused(tmp_path: Path) -> None:
    folder = folder_with(tmp_path)
    (folder / POSTER_STATS_NAME).mkdir()
    assert read_stats(folder) is None


def test_no_candidates_nothing_to_describe(tmp_path: Path) -> None:
    assert read_stats(tmp_path) == []


def no_ffmpeg(calls: list[Path]) -> object:
    async def analyze_all(folder: Path, ffmpeg: str) -> list[Candidate]:
        calls.append(folder)
        raise AssertionError("the poster ran ffmpeg although the encode described every frame")

    return analyze_all


def test_make_poster_reads_the_stats_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = folder_with(tmp_path, stats=stats_text())
    (folder / ".poster-4.jpg.tmp").write_bytes(b"partial")
    calls: list[Path] = []
    monkeypatch.setattr(poster, "analyze_all", no_ffmpeg(calls))
    chosen = asyncio.run(make_poster(folder, "/nonexistent/ffmpeg"))
    assert chosen == folder / POSTER_NAME and not calls
    assert chosen.read_bytes() == b"\xff\xd8 candidate 2"  # usable and the sharpest
    assert sorted(p.name for p in folder.iterdir()) == [POSTER_NAME]  # stats and .tmp gone


@pytest.mark.parametrize("stats", [None, stats_text(FRAMES[:2])], ids=["missing", "short"])
def test_make_poster_falls_back_to_measuring_the_jpegs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stats: str | None
) -> None:
    folder = folder_with(tmp_path, stats=stats)
    calls: list[tuple[Path, str]] = []

    async def analyze_all(where: Path, ffmpeg: str) -> list[Candidate]:
        calls.append((where, ffmpeg))
        return [Candidate(where / ".poster-3.jpg", 120.0, 20.0, 200.0, 2.0)]

    monkeypatch.setattr(poster, "analyze_all", analyze_all)
    chosen = asyncio.run(make_poster(folder, "my-ffmpeg"))
    assert calls == [(folder, "my-ffmpeg")]
    assert chosen is not None and chosen.read_bytes() == b"\xff\xd8 candidate 3"
    assert sorted(p.name for p in folder.iterdir()) == [POSTER_NAME]


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("file:/w/out/.poster-stats.txt", "file\\\\:/w/out/.poster-stats.txt"),
        ("/a b/c", "/a\\\\\\ b/c"),
        ("/it's,[x];y\\z", "/it\\\\\\'s\\,\\[x\\]\\;y\\\\\\\\z"),
    ],
)
def test_filter_values_are_escaped_for_both_parsers(text: str, escaped: str) -> None:
    assert filter_value(text) == escaped
