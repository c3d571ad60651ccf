"""Items 6 and 7: the node only removes what it made, and what it writes is its own.

* Start-up clean-up: only folders named like the node's, with its marker, owned by its user and
  left by a process that is gone; never the operator's files, never a symlink.
* ``doctor`` warns when TEMP_DIR is (inside) a folder every user can write to.
* Modes: 0700 folders and 0600 files under DATA_DIR and TEMP_DIR even under umask 000; a job
  folder someone else made (or a symlink in its place) is refused.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from speak_encoder.node.models import JobState
from speak_encoder.private_files import WORK_MARKER
from speak_encoder.testing.http_faults import BytesPayload, FaultServer
from tests.e2e.security.conftest import CLI, cli_env, wait_until
from tests.support.node_fixtures import NodeProcess

#: A user id that owns nothing of the test's (``nobody``).
OTHER_UID = 65534


def dead_marker() -> str:
    """The marker a process that has exited would have left: whatever runs under that pid now
    (if anything) did not start 1 s after the epoch."""
    return f"{os.getpid()} 1.00"


def started(node: NodeProcess) -> None:
    wait_until(lambda: "stale work folder(s) removed" in node.log(), "the node's start-up")


@pytest.mark.slow
def test_start_up_removes_only_the_nodes_own_stale_folders(
    make_node: Callable[..., NodeProcess], tmp_path: Path
) -> None:
    node = make_node()
    work = Path(node.env["TEMP_DIR"])
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("the operator's")
    (work / "photos").mkdir()
    (work / "photos" / "a.jpg").write_bytes(b"\xff\xd8")
    unmarked = work / uuid.uuid4().hex  # named like a job, but not made by the node
    unmarked.mkdir()
    (unmarked / "keep").write_text("x")
    stale = work / f"job-{uuid.uuid4().hex}"  # an `encode` that crashed
    stale.mkdir()
    (stale / WORK_MARKER).write_text(dead_marker())
    (stale / "source.mp4").write_bytes(b"partial")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / WORK_MARKER).write_text(dead_marker())
    (elsewhere / "precious").write_text("y")
    linked = work / uuid.uuid4().hex
    linked.symlink_to(elsewhere, target_is_directory=True)
    foreign = work / uuid.uuid4().hex
    foreign.mkdir()
    (foreign / WORK_MARKER).write_text(dead_marker())
    os.chown(foreign, OTHER_UID, OTHER_UID)
    node.start()
    started(node)
    assert sorted(p.name for p in work.iterdir()) == sorted(
        ["notes.txt", "photos", unmarked.name, linked.name, foreign.name]
    )
    assert (work / "photos" / "a.jpg").exists() and (unmarked / "keep").exists()
    assert (elsewhere / "precious").read_text() == "y" and linked.is_symlink()
    assert "1 stale work folder(s) removed" in node.log()


def doctor_private(tmp_path: Path, temp_dir: Path) -> list[dict[str, str]]:
    env = cli_env(tmp_path, TEMP_DIR=str(temp_dir))
    done = subprocess.run([*CLI, "doctor", "--json", "--no-hardware"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    checks: list[dict[str, str]] = json.loads(done.stdout)["checks"]
    return [c for c in checks if c["name"].startswith("private")]


def test_doctor_warns_about_a_shared_temp_dir(tmp_path: Path) -> None:
    shared = doctor_private(tmp_path, Path("/tmp"))
    assert any(c["status"] == "warn" and "TEMP_DIR: /tmp is a folder every user" in c["detail"]
               for c in shared)  # fmt: skip
    # not there yet, right under /tmp: another user could create it first
    absent = Path("/tmp") / f"speak-encoder-absent-{uuid.uuid4().hex[:8]}" / "work"
    inside = doctor_private(tmp_path, absent)
    assert any("inside /tmp, which is writable by every user" in c["detail"] for c in inside)
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    opened = doctor_private(tmp_path, open_folder / "work")
    assert any(f"inside {open_folder}, which is writable by every user" in c["detail"]
               for c in opened), opened  # fmt: skip
    # a 0700 folder of the node's own keeps everyone out, even below /tmp (pytest's and CI's
    # temporary folders are such folders)
    private_root = tmp_path / "own"
    private_root.mkdir(mode=0o700)
    mine = doctor_private(tmp_path, private_root / "work")
    assert not any("TEMP_DIR" in c["detail"] for c in mine), mine


def _no_umask() -> None:
    os.umask(0)


def modes_under(*roots: Path, skip: set[Path]) -> dict[str, str]:
    found = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            if path in skip or path.is_symlink():
                continue
            found[str(path)] = f"{stat.S_IMODE(path.stat().st_mode):04o}"
    return found


@pytest.mark.slow
def test_everything_is_private_even_under_umask_000(
    make_node: Callable[..., NodeProcess], sample: Callable[[str], Path]
) -> None:
    video = sample("landscape").read_bytes()
    with FaultServer() as origin:
        origin.add("/clip.mp4", BytesPayload(video))
        node = make_node(SPEAK_ENCODER_TEST_PAUSE_AFTER="fetch",
                         SPEAK_ENCODER_TEST_PAUSE_SECONDS="3")  # fmt: skip
        job_id = node.submit(origin.url("/clip.mp4"))
        node.data_dir.mkdir(parents=True, exist_ok=True)
        with node.log_path.open("ab") as log:
            node.proc = subprocess.Popen(
                [*CLI, "run"], env=node.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=_no_umask,
            )  # fmt: skip
        work = Path(node.env["TEMP_DIR"])
        source = work / job_id / "source.mp4"
        node.wait_for(
            job_id,
            lambda j: (
                j.stage is not None
                and "fetch" in j.progress
                and source.exists()
                and j.progress["fetch"] >= 1.0
            ),
            what="the download",
        )
        assert stat.S_IMODE(source.stat().st_mode) == 0o600
        assert stat.S_IMODE((work / job_id).stat().st_mode) == 0o700
        node.wait_for(job_id, lambda j: j.state is JobState.COMPLETE, what="completion")
    modes = modes_under(node.data_dir, work, skip={node.log_path})
    wrong = {p: m for p, m in modes.items()
             if m != ("0700" if Path(p).is_dir() else "0600")}  # fmt: skip
    assert not wrong, wrong
    assert any(p.endswith("jobs.sqlite3") for p in modes) and any("/store/" in p for p in modes)


@pytest.mark.slow
def test_a_job_folder_made_by_someone_else_is_refused(
    make_node: Callable[..., NodeProcess], sample: Callable[[str], Path], tmp_path: Path
) -> None:
    node = make_node(HARDWARE_ACCELERATION="false")
    planted = node.submit(str(sample("landscape")))
    linked = node.submit(str(sample("landscape")), "--priority", "-1")
    work = Path(node.env["TEMP_DIR"])
    work.mkdir(parents=True)
    (work / planted).mkdir(mode=0o777)
    os.chown(work / planted, OTHER_UID, OTHER_UID)
    target = tmp_path / "attacker"
    target.mkdir()
    (work / linked).symlink_to(target, target_is_directory=True)
    node.start()
    for job_id, why in ((planted, "belongs to another user"), (linked, "symbolic link")):
        job = node.wait_for(job_id, lambda j: j.state is JobState.FAILED, what=f"refusal ({why})")
        assert job.error_kind == "ConfigError" and why in (job.error or "")
    assert list(target.iterdir()) == [], "nothing was written through the symlink"
