"""IPFS benchmarks: memory flatness and throughput of the storage layer against a real node.

For a small run (``--small-mb``, default 200) and a large one (``--size-mb``, default 2048):

* **add**: peak RSS of a fresh Python process uploading a folder of segments with
  ``KuboClient.add_folder`` (multipart, one open file at a time) vs ``curl`` doing the same
  multipart upload; the node's repo is emptied (``pin/rm`` + ``repo/gc``) before each upload.
* **cat**: peak RSS of a fresh Python process downloading one file of that size with
  ``KuboClient.cat`` into a file vs ``curl -o``, ``--rounds`` interleaved rounds (fastest of
  each counts: the node's own speed varies from read to read). Peaks are ``VmHWM``.
* **cid**: local CID computation (``import_folder``) vs ``sha256sum`` of the same bytes.

Ratios are throughput(Python) ÷ throughput(reference); targets: add/cat ≥ 0.9, cid ≥ 0.8, and
peak RSS ≤ 100 MB and flat between the two sizes. Data is generated in a temporary folder and
deleted afterwards. The node is js-ipfs (``.tools/ipfs``), started on loopback for the run.

Run standalone: ``.venv/bin/python bench/ipfs_bench.py [--size-mb N] [--small-mb N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from rss import own_peak_bytes
from speak_encoder.storage.kubo import KuboClient
from speak_encoder.storage.unixfs import import_folder, walk_files
from speak_encoder.testing.ipfs_node import JsIpfsNode

MB = 1_000_000
#: Size of one generated segment file.
SEGMENT_BYTES = 20 * MB


def _generate(path: Path, size: int, seed: int) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 4 * 1024 * 1024)
            out.write(rng.randbytes(n))
            left -= n


def generate_folder(root: Path, total: int, seed: int) -> None:
    index = 0
    left = total
    while left > 0:
        size = min(SEGMENT_BYTES, left)
        _generate(root / "1080p" / f"1080p_{index}.ts", size, seed + index)
        left -= size
        index += 1
    (root / "manifest.m3u8").write_text("#EXTM3U\n1080p/index.m3u8\n", encoding="utf-8")


# --- child processes (fresh interpreters: their peak RSS is the measure) ------------------------


def _child_main(argv: list[str]) -> int:
    mode, api, target = argv[0], argv[1], Path(argv[2])

    async def run() -> str:
        async with KuboClient(api, processing_timeout=3600) as client:
            if mode == "add":
                return (await client.add_folder(target)).root
            await client.cat(argv[3], target, stall_timeout=120)
            return argv[3]

    started = time.perf_counter()
    root = asyncio.run(run())
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mb": own_peak_bytes() / 2**20, "root": root}))
    return 0


def run_child(*args: str) -> dict[str, float | str]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, float | str] = json.loads(out.strip().splitlines()[-1])
    return result


def curl_add(api: str, folder: Path) -> float:
    argv = ["curl", "-sS", "-f", "-o", "/dev/null", "-X", "POST"]
    for rel, path in walk_files(folder):
        from urllib.parse import quote

        argv += ["-F", f"file=@{path};filename={quote(rel, safe='')};type=application/octet-stream"]
    argv.append(f"{api}/api/v0/add?wrap-with-directory=true&pin=true&cid-version=0")
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - started


def curl_cat(api: str, cid: str, dest: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["curl", "-sS", "-f", "-X", "POST", "-o", str(dest), f"{api}/api/v0/cat?arg={cid}"],
        check=True,
    )
    return time.perf_counter() - started


def empty_repo(api: str) -> None:
    pins = httpx.post(f"{api}/api/v0/pin/ls", params={"type": "recursive"}, timeout=600).json()
    for cid in pins.get("Keys", {}):
        httpx.post(f"{api}/api/v0/pin/rm", params={"arg": cid}, timeout=600)
    httpx.post(f"{api}/api/v0/repo/gc", timeout=3600)


def sha256sum_seconds(folder: Path) -> float:
    files = [str(path) for _, path in walk_files(folder)]
    started = time.perf_counter()
    subprocess.run(["sha256sum", *files], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


@dataclass
class Row:
    size_mb: int
    add_s: float
    add_peak_mb: float
    curl_add_s: float
    cat_s: float
    cat_peak_mb: float
    curl_cat_s: float
    cid_s: float
    sha_s: float


def measure(node: JsIpfsNode, work: Path, size: int, seed: int, rounds: int = 3) -> Row:
    api = node.api_url
    folder = work / f"folder-{size}"
    generate_folder(folder, size, seed)
    try:
        # cid vs sha256sum (second read of each: both from the page cache)
        sha_s = sha256sum_seconds(folder)
        started = time.perf_counter()
        expected = str(import_folder(folder))
        cid_s = time.perf_counter() - started

        empty_repo(api)
        add = run_child("add", api, str(folder))
        if add["root"] != expected:
            raise SystemExit(f"root mismatch: node {add['root']} vs local {expected}")
        empty_repo(api)
        curl_add_s = curl_add(api, folder)

        # cat: one file of `size` bytes (the folder's segments glued together on the node
        # side would be a different DAG; a real single file is what a source download is)
        big = work / f"single-{size}.bin"
        _generate(big, size, seed + 1000)
        with open(big, "rb") as handle:
            response = httpx.post(
                f"{api}/api/v0/add", files={"file": (big.name, handle)}, timeout=3600
            )
        cid = json.loads(response.text.strip().splitlines()[-1])["Hash"]
        big.unlink()
        dest = work / "cat.out"
        # interleaved rounds, fastest of each: the js-ipfs node's own speed varies by ±30 %
        # from one read to the next, which one round would charge to whichever client it hit
        cats: list[dict[str, float | str]] = []
        curl_cats: list[float] = []
        for _ in range(rounds):
            curl_cats.append(curl_cat(api, cid, dest))
            dest.unlink()
            cats.append(run_child("cat", api, str(dest), cid))
            if dest.stat().st_size != size:
                raise SystemExit(f"cat wrote {dest.stat().st_size} bytes, expected {size}")
            dest.unlink()
        cat = min(cats, key=lambda c: float(c["seconds"]))
        cat["peak_mb"] = max(float(c["peak_mb"]) for c in cats)
        curl_cat_s = min(curl_cats)
        empty_repo(api)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Row(
        size // MB,
        float(add["seconds"]),
        float(add["peak_mb"]),
        curl_add_s,
        float(cat["seconds"]),
        float(cat["peak_mb"]),
        curl_cat_s,
        cid_s,
        sha_s,
    )


def print_table(rows: list[Row]) -> None:
    print(
        f"{'size MB':>8} | {'add s':>7} {'curl s':>7} {'ratio':>5} {'peak MB':>8} | "
        f"{'cat s':>7} {'curl s':>7} {'ratio':>5} {'peak MB':>8} | "
        f"{'cid s':>7} {'sha s':>7} {'ratio':>5}"
    )
    for r in rows:
        print(
            f"{r.size_mb:>8} | {r.add_s:>7.2f} {r.curl_add_s:>7.2f} {r.curl_add_s / r.add_s:>5.2f}"
            f" {r.add_peak_mb:>8.1f} | {r.cat_s:>7.2f} {r.curl_cat_s:>7.2f}"
            f" {r.curl_cat_s / r.cat_s:>5.2f} {r.cat_peak_mb:>8.1f} | {r.cid_s:>7.2f}"
            f" {r.sha_s:>7.2f} {r.sha_s / r.cid_s:>5.2f}"
        )
    if len(rows) == 2:
        small, big = rows
        print(
            f"peak RSS growth {small.size_mb} → {big.size_mb} MB: add "
            f"{big.add_peak_mb - small.add_peak_mb:+.1f} MB, cat "
            f"{big.cat_peak_mb - small.cat_peak_mb:+.1f} MB (targets: ≤ 100 MB and flat; "
            "ratios ≥ 0.9 add/cat, ≥ 0.8 cid)"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` defaults to no arguments (as bench/run_all.py calls it)."""
    args_list = [] if argv is None else argv
    if args_list[:1] == ["--child"]:
        return _child_main(args_list[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=2048, help="large run (default 2048)")
    parser.add_argument("--small-mb", type=int, default=200, help="small run (default 200)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where to generate data")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved cat rounds, fastest counts (default 3)"
    )
    args = parser.parse_args(args_list)
    work = Path(tempfile.mkdtemp(prefix="ipfs-bench-", dir=args.work_dir))
    rows: list[Row] = []
    try:
        with JsIpfsNode(work / "node") as node:
            for i, size_mb in enumerate([args.small_mb, args.size_mb]):
                print(f"== {size_mb} MB ...", file=sys.stderr, flush=True)
                seed = 1000 * (i + 1)
                rows.append(measure(node, work, size_mb * MB, seed=seed, rounds=args.rounds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("IPFS storage benchmark (js-ipfs node on loopback; ratio = Python ÷ reference speed)")
    print_table(rows)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main(sys.argv[1:]))
