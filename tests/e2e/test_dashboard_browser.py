"""The dashboard in a real browser: Debian's headless Chromium (Selenium + chromedriver) against a
live node (real Service, real ffmpeg encodes, the operator server over real HTTP).

Missing chromium/chromedriver/selenium FAILS these tests naming scripts/install-test-deps.sh.
Screenshots go to test-output/ (gitignored).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speak_encoder.node.models import JobState
from tests.support.browser_fixtures import LiveNode, screenshot

TOKEN = "op-token-7f3a9c-0123456"
XSS = "<img src=x onerror=\"document.title='pwned';window.__pwned=1\">"


def wait(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except Exception:  # a row re-rendered under us (every snapshot rebuilds the tables)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.1)


def open_live(driver: Any, node: LiveNode) -> None:
    driver.get(node.url + "/")
    wait(lambda: driver.execute_script("return document.body.dataset.updated"), 15, "a snapshot")
    state = driver.execute_script("return document.getElementById('conn').dataset.state")
    assert state == "live"


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def click_in_row(driver: Any, job_id: str, css: str) -> None:
    """Click a button of a job's row (tables are rebuilt every snapshot: retry on stale rows)."""

    def attempt() -> bool:
        row = driver.find_element("css selector", f"tr[data-job='{job_id}']")
        row.find_element("css selector", css).click()
        return True

    wait(attempt, 10, f"{css} of {job_id}")


def action_message(driver: Any) -> tuple[str, str]:
    result, text = driver.execute_script(
        "const m = document.getElementById('action-msg');"
        "return [m.dataset.result || '', m.textContent]"
    )
    return str(result), str(text)


def test_untrusted_text_and_token_gated_retry(
    chrome: Any, live_node: Callable[..., LiveNode], tmp_path: Path
) -> None:
    node = live_node(dashboard_token=TOKEN)
    job_id = node.submit(
        str(tmp_path / "missing" / f"{XSS}.mp4"), request={"owner": XSS, "permlink": XSS}
    )
    failed = node.wait_for(job_id, {JobState.FAILED}, timeout=30)
    open_live(chrome, node)

    row_text = wait(
        lambda: chrome.find_element("css selector", f"#failed tr[data-job='{job_id}']").text,
        10,
        "the failed job's row",
    )
    assert XSS in row_text  # owner/permlink and the file name, as text
    tables = chrome.find_element("css selector", "#failed").get_attribute("innerHTML")
    assert str(tmp_path) not in tables  # no local path (the log tail is the operator's own)
    assert chrome.find_elements("css selector", "main img") == []
    assert chrome.execute_script("return window.__pwned === undefined && document.title") == (
        "speak-encoder"
    )

    assert console_errors(chrome) == []

    # without the token: refused (401), the job stays failed
    chrome.execute_script("sessionStorage.clear()")
    click_in_row(chrome, job_id, "button.act-retry")
    result, text = wait(lambda: action_message(chrome)[0] and action_message(chrome), 10, "refusal")
    assert (result, "refused (401)" in text) == ("refused", True), text
    assert node.job(job_id).state is JobState.FAILED
    assert node.job(job_id).updated_at == failed.updated_at

    # with the token: done, the job is queued again (and fails again: its file is still missing)
    chrome.find_element("id", "token").send_keys(TOKEN)
    chrome.find_element("css selector", "#token-form button[type=submit]").click()
    click_in_row(chrome, job_id, "button.act-retry")
    wait(lambda: action_message(chrome)[0] == "ok", 10, "the retry to be accepted")
    node.wait_until(lambda: node.job(job_id).updated_at > failed.updated_at, 10, "the retry")
    assert any("retry of job " + job_id in line for line in node.ring.lines())
    screenshot(chrome, "dashboard-failed-retry")
    # the only console error: the refused request's 401, which the page reported as such
    assert [e["message"] for e in console_errors(chrome)] == [
        f"{node.url}/api/jobs/{job_id}/retry - Failed to load resource: the server responded "
        "with a status of 401 (Unauthorized)"
    ]


def test_running_job_progress_moves(
    chrome: Any, live_node: Callable[..., LiveNode], sample: Callable[[str], Path]
) -> None:
    node = live_node(encoder_preset="veryslow")
    job_id = node.submit(str(sample("fullhd")))
    open_live(chrome, node)

    def encode_progress() -> float | None:
        value = chrome.execute_script(
            "const bar = document.querySelector(`#active tr[data-job='${arguments[0]}'] "
            "[data-stage='encode'] progress`); return bar ? bar.value : null",
            job_id,
        )
        return float(value) if value is not None else None

    first = wait(lambda: (encode_progress() or 0) > 0 and encode_progress(), 45, "encoding")
    wait(lambda: (encode_progress() or 0) > first, 30, "the progress bar to move")
    texts = chrome.find_element("css selector", f"#active tr[data-job='{job_id}']").text
    assert "encode" in texts
    chart = chrome.find_elements("css selector", "#chart polyline")
    assert len(chart) == 3  # encoder RSS, ffmpeg RSS, disk free
    screenshot(chrome, "dashboard-progress")
    assert console_errors(chrome) == []


def test_finished_job_plays_in_the_page(
    chrome: Any, live_node: Callable[..., LiveNode], sample: Callable[[str], Path]
) -> None:
    node = live_node()  # read-only (no DASHBOARD_TOKEN)
    job_id = node.submit(str(sample("landscape")))
    job = node.wait_for(job_id, {JobState.COMPLETE, JobState.FAILED}, timeout=60)
    assert job.state is JobState.COMPLETE, job.error
    open_live(chrome, node)
    assert chrome.find_element("css selector", f"#recent tr[data-job='{job_id}'] .act-play")
    assert all(not b.is_enabled() for b in chrome.find_elements("css selector", ".act-retry"))
    click_in_row(chrome, job_id, "button.act-play")

    video = "document.getElementById('player')"
    wait(lambda: chrome.execute_script(f"return Number({video}.dataset.fragments)") > 0, 20, "hls")
    assert chrome.execute_script(f"return {video}.dataset.engine") == "hls.js"
    error = chrome.execute_script(f"return {video}.dataset.error")
    assert not error, error
    wait(lambda: chrome.execute_script(f"return {video}.currentTime") > 0.5, 20, "playback")
    screenshot(chrome, "dashboard-player")
    assert console_errors(chrome) == []

    # the poster is shown in the row and on the player, from the local store
    poster = chrome.execute_script(f"return {video}.poster")
    assert poster.endswith(f"/store/{job.result['cid']}/thumbnail.jpg"), poster
    loaded = "return document.querySelector(\"#recent tr[data-job='%s'] img.poster\").naturalWidth"
    wait(lambda: chrome.execute_script(loaded % job_id) == 640, 10, "the poster image")

    # the node goes away: the page says so (EventSource keeps trying by itself)
    node.stop()
    conn = "return document.getElementById('conn').dataset.state"
    wait(lambda: chrome.execute_script(conn) == "reconnecting", 15, "the reconnecting state")


def test_every_level_of_a_ladder_with_iframe_playlists_plays(
    chrome: Any, live_node: Callable[..., LiveNode], sample: Callable[[str], Path]
) -> None:
    """hls.js reads a master playlist with #EXT-X-I-FRAME-STREAM-INF and plays each level."""
    node = live_node()
    job_id = node.submit(str(sample("hd720")))
    job = node.wait_for(job_id, {JobState.COMPLETE, JobState.FAILED}, timeout=120)
    assert job.state is JobState.COMPLETE, job.error
    manifest = node.settings.data_dir / "store" / str(job.result["cid"]) / "manifest.m3u8"
    assert manifest.read_text().count("#EXT-X-I-FRAME-STREAM-INF") == 2
    open_live(chrome, node)
    click_in_row(chrome, job_id, "button.act-play")
    video = "document.getElementById('player')"
    wait(lambda: chrome.execute_script(f"return {video}.dataset.levels") == "2", 20, "2 levels")
    for level in (0, 1):
        chrome.execute_script(f"{video}.hlsPlayer.currentLevel = {level}")
        played = f"return {video}.dataset.levelsPlayed.split(',')"
        wait(lambda: str(level) in chrome.execute_script(played), 30, f"level {level}")  # noqa: B023
        error = chrome.execute_script(f"return {video}.dataset.error")
        assert not error, error
    wait(lambda: chrome.execute_script(f"return {video}.currentTime") > 0.5, 20, "playback")
    assert console_errors(chrome) == []
