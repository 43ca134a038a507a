"""Benchmark of `asn.data.download`: loopback download throughput and resume efficiency.

Generates a zip archive of incompressible random bytes (default 200 MiB) in a temporary
folder, serves it from a real HTTP server on 127.0.0.1 (the tests' RangeFileServer) and:

1. downloads it with :func:`asn.data.download.fetch` (sha256 verified) ``--repeats`` times and
   reports MiB/s (goal: >= 100 MiB/s);
2. interrupts a download after ``--cut-fraction`` of the bytes, resumes it, and asserts that the
   resumed request asked for ``Range: bytes=N-`` and the server sent exactly the missing bytes;
3. extracts the archive with :func:`asn.data.download.extract_archive` (MiB/s).

Writes reports/bench/download.json atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the HTTP server shared with the tests

from test_download_server import RangeFileServer  # noqa: E402

from asn.data.download import extract_archive, fetch, sha256_file  # noqa: E402
from asn.errors import InputError  # noqa: E402
from asn.io import write_json_atomic  # noqa: E402

MIB = 1 << 20


def make_archive(path: Path, *, size_mib: int, member_mib: int = 10) -> None:
    """A stored (uncompressed) zip of random members totalling about ``size_mib`` MiB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        left, i = size_mib, 0
        while left > 0:
            n = min(member_mib, left)
            zf.writestr(f"training/image_2/{i:06d}.bin", os.urandom(n * MIB))
            left -= n
            i += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=200, help="archive size in MiB (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed downloads (default: %(default)s)")
    parser.add_argument("--cut-fraction", type=float, default=0.37,
                        help="where the interrupted transfer is cut (default: %(default)s)")
    parser.add_argument("--goal-mib-s", type=float, default=100.0, help="throughput goal (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "download.json",
                        help="JSON report (default: reports/bench/download.json)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="asn-bench-download-") as tmp_name:
        tmp = Path(tmp_name)
        archive = tmp / "data_object_image_2.zip"
        t0 = time.perf_counter()
        make_archive(archive, size_mib=args.size_mib)
        size = archive.stat().st_size
        expected_sha = sha256_file(archive)
        print(f"archive: {size / MIB:.1f} MiB in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

        with RangeFileServer(files={archive.name: archive}) as server:
            url = server.url(archive.name)

            # 1. full downloads (fresh cache each time)
            seconds = []
            for k in range(args.repeats):
                dest = tmp / f"cache{k}" / archive.name
                t = time.perf_counter()
                result = fetch(url, dest, sha256=expected_sha, retries=0, progress=False)
                seconds.append(time.perf_counter() - t)
                assert result.size == size and result.sha256 == expected_sha
                dest.unlink()
            mib_s = [size / MIB / s for s in seconds]

            # 2. interrupted, then resumed
            cut = int(size * args.cut_fraction)
            server.log.clear()
            server.cut_after[archive.name] = [cut]
            dest = tmp / "resume" / archive.name
            try:
                fetch(url, dest, sha256=expected_sha, retries=0, progress=False)
                raise AssertionError("the interrupted download did not fail")
            except InputError:
                pass
            part_size = dest.with_name(dest.name + ".part").stat().st_size
            first_served = server.bytes_served()
            t = time.perf_counter()
            resumed = fetch(url, dest, sha256=expected_sha, retries=0, progress=False)
            resume_s = time.perf_counter() - t
            second = server.log[-1]
            resume_served = second.bytes_sent
            assert second.range == f"bytes={part_size}-", second.range
            assert resume_served == size - part_size, (resume_served, size, part_size)
            assert resumed.sha256 == expected_sha
            assert hashlib.sha256(dest.read_bytes()).hexdigest() == expected_sha

        # 3. extraction
        t = time.perf_counter()
        extract_archive(dest, tmp / "extracted", progress=False)
        extract_s = time.perf_counter() - t

    report = {
        "archive_bytes": size,
        "download": {
            "seconds": [round(s, 3) for s in seconds],
            "mib_per_s": [round(v, 1) for v in mib_s],
            "median_mib_per_s": round(statistics.median(mib_s), 1),
            "goal_mib_per_s": args.goal_mib_s,
            "meets_goal": statistics.median(mib_s) >= args.goal_mib_s,
            "includes": "HTTP over 127.0.0.1 (Python server), write to disk, sha256 verification",
        },
        "resume": {
            "cut_at_bytes": cut,
            "partial_file_bytes": part_size,
            "first_request_bytes_served": first_served,
            "resume_request_range": second.range,
            "resume_bytes_served": resume_served,
            "missing_bytes": size - part_size,
            "only_missing_bytes_served": resume_served == size - part_size,
            "resume_seconds": round(resume_s, 3),
        },
        "extract": {"seconds": round(extract_s, 3), "mib_per_s": round(size / MIB / extract_s, 1)},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }
    report["command"] = " ".join(["python", "bench/download.py", *sys.argv[1:]])
    write_json_atomic(args.out, report, indent=True)
    print(
        f"download: median {report['download']['median_mib_per_s']} MiB/s (goal {args.goal_mib_s}); "
        f"resume served {resume_served} of {size} bytes (missing {size - part_size}); "
        f"extract {report['extract']['mib_per_s']} MiB/s -> {args.out}",
        file=sys.stderr,
    )
    return 0 if report["download"]["meets_goal"] else 1


if __name__ == "__main__":
    sys.exit(main())
