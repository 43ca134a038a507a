"""The raw dataset: fetch (or generate) it and publish one folder layout for both sources.

Layout of the published folder (``out_dir``), whatever the source::

    training/image_2/NNNNNN.png      KITTI object images (train split of KINS)
    testing/image_2/NNNNNN.png       KITTI object images (test split of KINS)
    training/label_2/NNNNNN.txt      KITTI labels (optional)
    update_{train,test}_2020.json    KINS 2020 release, or instances_{train,val}.json (2019)
    manifest.json                    source, release, inputs and every file's sha256 and size

The folder is built in a temporary folder beside ``out_dir`` and renamed into place only when
everything succeeded (:func:`asn.io.atomic_dir`), so a failed run -- a wrong checksum, a truncated
or malicious archive, an interrupted transfer -- leaves a previous good folder untouched.

Downloads go to a separate cache folder: ``NAME.part`` while in flight (resumed with an HTTP
Range request, restarted when the server ignores Range), ``NAME`` plus a ``NAME.json`` record
(url, size, sha256) once complete and verified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import stat
import sys
import tarfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import unquote, urlsplit

from asn.data.kins import RELEASE_FILE_NAMES, release_from_keys
from asn.errors import InputError
from asn.io import atomic_dir, dumps_json, read_json, write_json_atomic

CHUNK_BYTES = 1 << 20

# KINS annotation file names per release, keyed by the split names used in params.yaml.
# The 2019 release calls its test split "val"; the files keep their original names.
IMAGE_DIRS = ("training/image_2", "testing/image_2")
LABEL_DIR = "training/label_2"
MANIFEST_NAME = "manifest.json"

# HTTP statuses worth retrying: the server or a proxy is busy or briefly broken.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class FileSpec:
    """Where one input comes from: a ``url`` to fetch or a local ``path``, and its sha256.

    ``path`` wins over ``url`` when both are set (the user already has the file). An empty
    ``sha256`` skips verification.
    """

    url: str = ""
    sha256: str = ""
    path: str = ""

    @property
    def empty(self) -> bool:
        return not (self.url or self.path)

    @classmethod
    def from_mapping(cls, value: Any, *, key: str, source: str | os.PathLike = "params.yaml") -> "FileSpec":
        """A spec from a params mapping ``{url, sha256, path}`` (missing keys mean empty)."""
        if value is None:
            return cls()
        if isinstance(value, str):
            # A bare string is a convenience: a URL when it has a scheme, else a local path.
            value = {"url": value} if re.match(r"^[a-z][a-z0-9+.-]*://", value) else {"path": value}
        if not isinstance(value, Mapping):
            raise InputError(source, f"{key}: expected a mapping with url, sha256 and path, got {value!r}")
        unknown = sorted(set(value) - {"url", "sha256", "path"})
        if unknown:
            raise InputError(source, f"{key}: unknown keys {unknown}; expected url, sha256, path")
        fields = {}
        for name in ("url", "sha256", "path"):
            raw = value.get(name) or ""
            if not isinstance(raw, str):
                raise InputError(source, f"{key}.{name}: expected a string, got {raw!r}")
            fields[name] = raw.strip()
        sha = fields["sha256"].lower()
        if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise InputError(source, f"{key}.sha256: not a sha256 hex digest: {fields['sha256']!r}")
        fields["sha256"] = sha
        if fields["url"].startswith("file://") and not fields["path"]:
            # A file:// URL is a local path; nothing to download.
            fields["path"], fields["url"] = unquote(urlsplit(fields["url"]).path), ""
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` did: the complete file, and how many bytes came over the network."""

    path: Path
    size: int
    sha256: str
    bytes_transferred: int  # body bytes received in this call (0 when served from the cache)
    resumed_from: int  # size of the partial file the first request continued from
    attempts: int  # HTTP requests made (0 when served from the cache)
    cached: bool


class _Retryable(Exception):
    """A transient failure: the next attempt may succeed (and resumes from the partial file)."""


# --------------------------------------------------------------------------------------------
# Hashing


def sha256_file(path: str | os.PathLike, *, chunk_bytes: int = CHUNK_BYTES) -> str:
    """Hex sha256 of a file, read in chunks (constant memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str, *, label: str | None = None) -> str:
    """Hash ``path`` and compare with ``expected`` (skipped when empty); returns the digest."""
    actual = sha256_file(path)
    if expected and actual != expected.lower():
        raise InputError(label or path, f"sha256 mismatch: expected {expected.lower()}, got {actual}")
    return actual


# --------------------------------------------------------------------------------------------
# HTTP download with resume, retry and verification


def cache_name(url: str) -> str:
    """The file name a URL is cached under: the last path segment, made safe for a file name."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "download-" + hashlib.sha256(url.encode()).hexdigest()[:16]


def _content_range_start(header: str | None) -> tuple[int | None, int | None]:
    """(start, total) from ``Content-Range: bytes START-END/TOTAL`` (or ``bytes */TOTAL``)."""
    if not header:
        return None, None
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str = "",
    retries: int = 5,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
    chunk_bytes: int = CHUNK_BYTES,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchResult:
    """Download ``url`` to ``dest``, resuming ``dest.part`` and verifying ``sha256`` if given.

    - A complete, recorded ``dest`` (``dest.json`` holds its url, size and sha256) is reused
      without any request when its url matches and the configured sha256 (if any) matches.
    - A partial ``dest.part`` is continued with ``Range: bytes=N-``; a ``200`` reply means the
      server ignored Range, and the file restarts from zero. ``416`` with a partial file as
      long as the resource means the transfer was already complete.
    - Connection errors, timeouts, short bodies and 408/429/5xx replies are retried up to
      ``retries`` times, waiting ``backoff_s * 2**k`` seconds before retry ``k`` (0-based); each
      retry resumes from the bytes already on disk.
    - A sha256 mismatch raises :class:`InputError` and deletes the partial file (retrying once
      from scratch first if the file had been resumed, in case the parts came from two versions).

    The finished file is renamed onto ``dest`` only after verification, so ``dest`` is either
    absent or complete. Raises :class:`InputError` naming the URL on failure.
    """
    import requests
    import urllib3

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    part_record = dest.with_name(dest.name + ".part.json")
    record = dest.with_name(dest.name + ".json")
    sha256 = (sha256 or "").lower()

    cached = _cached_result(dest, record, url=url, sha256=sha256)
    if cached is not None:
        return cached

    # A partial file left by a different URL (same cache name) cannot be continued.
    if part.exists():
        previous = _read_record(part_record)
        if previous.get("url") != url:
            part.unlink()
    write_json_atomic(part_record, {"url": url})

    resumed_from = part.stat().st_size if part.exists() else 0
    received = {"bytes": 0}  # body bytes over the network, failed attempts included
    attempts = 0
    failures = 0
    restarted_after_mismatch = False
    session = requests.Session()
    try:
        while True:
            attempts += 1
            try:
                digest = _fetch_once(
                    session, url, part, timeout_s=timeout_s, chunk_bytes=chunk_bytes,
                    progress=progress, received=received,
                )
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                    requests.exceptions.MissingSchema) as exc:
                raise InputError(url, f"not a usable http(s) URL: {exc}") from None
            except (_Retryable, requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError) as exc:
                # Connection refused/reset, read timeout, short body, 5xx: the partial file stays
                # and the next attempt continues it.
                failures += 1
                if failures > retries:
                    raise InputError(
                        url, f"download failed after {attempts} attempts: {type(exc).__name__}: {exc}"
                    ) from None
                sleep(backoff_s * (2 ** (failures - 1)))
                continue
            if sha256 and digest != sha256:
                if resumed_from > 0 and not restarted_after_mismatch:
                    # The first part may come from an older version of the file: start over once.
                    restarted_after_mismatch = True
                    part.unlink()
                    resumed_from = 0
                    continue
                part.unlink()
                raise InputError(
                    url, f"sha256 mismatch: expected {sha256}, got {digest} (the download was discarded)"
                )
            size = part.stat().st_size
            os.replace(part, dest)
            write_json_atomic(record, {"url": url, "size": size, "sha256": digest})
            return FetchResult(
                path=dest,
                size=size,
                sha256=digest,
                bytes_transferred=received["bytes"],
                resumed_from=resumed_from,
                attempts=attempts,
                cached=False,
            )
    finally:
        session.close()
        if not part.exists() and part_record.exists():
            part_record.unlink()


def _read_record(path: Path) -> dict:
    try:
        data = read_json(path)
    except InputError:
        return {}
    return data if isinstance(data, dict) else {}


def _cached_result(dest: Path, record: Path, *, url: str, sha256: str) -> FetchResult | None:
    """A FetchResult for a complete cached ``dest`` that matches ``url`` and ``sha256``."""
    if not dest.is_file():
        return None
    info = _read_record(record)
    if info.get("url") != url or info.get("size") != dest.stat().st_size:
        return None
    if sha256 and (info.get("sha256") != sha256 or sha256_file(dest) != sha256):
        # Re-hash even a recorded file: the cache folder may have been edited by hand.
        return None
    return FetchResult(
        path=dest,
        size=int(info["size"]),
        sha256=str(info.get("sha256", "")),
        bytes_transferred=0,
        resumed_from=0,
        attempts=0,
        cached=True,
    )


def _fetch_once(session, url: str, part: Path, *, timeout_s: float, chunk_bytes: int, progress: bool,
                received: dict[str, int]) -> str:
    """One HTTP request continuing ``part``; returns the sha256 of the whole file.

    Adds the body bytes it receives to ``received["bytes"]`` as they arrive (so bytes of an
    attempt that breaks off are counted too).

    Raises :class:`_Retryable` for transient failures, ``requests`` errors for broken
    connections, :class:`InputError` for permanent ones (404, bad Content-Range).
    """
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    # identity: the bytes on disk must be the resource itself, not a decoded transfer form.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with session.get(url, headers=headers, stream=True, timeout=(timeout_s, timeout_s)) as resp:
        status = resp.status_code
        if status == 416 and offset:
            _, total = _content_range_start(resp.headers.get("Content-Range"))
            if total is not None and total == offset:
                return sha256_file(part)  # the previous attempt had already got every byte
            part.unlink()  # the partial file is longer than the resource: it cannot be resumed
            raise _Retryable(f"HTTP 416 for a partial file of {offset} bytes; restarting")
        if status in _RETRY_STATUSES:
            raise _Retryable(f"HTTP {status} {resp.reason}")
        if status not in (200, 206):
            raise InputError(url, f"HTTP {status} {resp.reason}")
        if status == 206:
            start, total = _content_range_start(resp.headers.get("Content-Range"))
            if start != offset:
                raise InputError(
                    url, f"server answered Range bytes={offset}- with Content-Range "
                    f"{resp.headers.get('Content-Range')!r}"
                )
            mode = "ab"
        else:
            # 200: the server ignored Range (or there was no partial file): start from zero.
            offset, total, mode = 0, None, "wb"
        length = resp.headers.get("Content-Length")
        expected_body = int(length) if length and length.isdigit() else None
        if total is None and expected_body is not None:
            total = offset + expected_body

        digest = hashlib.sha256()
        if offset:
            # Hash what is already on disk so the whole file is hashed in one pass overall.
            with open(part, "rb") as f:
                for block in iter(lambda: f.read(chunk_bytes), b""):
                    digest.update(block)
        got = 0
        bar = tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name[: -len(".part")], disable=not progress, file=sys.stderr, leave=False,
        )
        try:
            with open(part, mode) as f:
                for block in resp.raw.stream(chunk_bytes, decode_content=False):
                    f.write(block)
                    digest.update(block)
                    got += len(block)
                    received["bytes"] += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
        if expected_body is not None and got < expected_body:
            # urllib3 normally raises on a short body; this guards servers that close early anyway.
            raise _Retryable(f"transfer cut after {got} of {expected_body} bytes")
        return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Archive extraction


def _member_problem(name: str) -> str | None:
    """Why an archive member name would escape the target folder, or None if it is safe."""
    if not name:
        return "empty member name"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "'..' in path"
    if "\x00" in name:
        return "NUL in member name"
    return None


def _inside(root: Path, name: str) -> bool:
    """Whether ``root/name`` resolves to a path inside ``root`` (after normalisation)."""
    target = (root / name).resolve()
    return target == root or root in target.parents


def archive_kind(path: str | os.PathLike) -> str | None:
    """``"zip"``, ``"tar"`` or None, from the file's content (not its name)."""
    path = Path(path)
    if not path.is_file():
        return None
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, tarfile.TarError, zlib.error):
        return None
    return None


def _looks_like_archive_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def extract_archive(
    archive: str | os.PathLike, target: str | os.PathLike, *, progress: bool = True
) -> Path:
    """Extract a .zip or .tar(.gz/.bz2/.xz) archive into ``target``, atomically and safely.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    symbolic links and hard links are refused (tar extraction also uses ``filter="data"``).
    Extraction goes to a temporary folder beside ``target`` that replaces ``target`` only on
    success. A truncated or corrupt archive raises :class:`InputError` naming the archive.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise InputError(archive, "archive not found")
    kind = archive_kind(archive)
    if kind is None:
        hint = " (truncated or corrupt)" if _looks_like_archive_name(archive) else ""
        raise InputError(archive, f"not a readable zip or tar archive{hint}")
    with atomic_dir(target) as tmp:
        if kind == "zip":
            _extract_zip(archive, tmp, progress=progress)
        else:
            _extract_tar(archive, tmp)
    return target


def _extract_zip(archive: Path, root: Path, *, progress: bool) -> None:
    from tqdm import tqdm

    root = root.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                problem = _member_problem(info.filename)
                mode = info.external_attr >> 16
                if problem is None and stat.S_ISLNK(mode):
                    problem = "symbolic link"
                if problem is None and not _inside(root, info.filename):
                    problem = "resolves outside the target folder"
                if problem is not None:
                    raise InputError(archive, f"refusing to extract: {problem}", record=f"member {info.filename!r}")
            total = sum(i.file_size for i in infos)
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"extract {archive.name}",
                disable=not progress, file=sys.stderr, leave=False,
            ) as bar:
                for info in infos:
                    out = root / info.filename
                    if info.is_dir():
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    # Reading to the end makes zipfile check the member's CRC-32.
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, CHUNK_BYTES)
                    bar.update(info.file_size)
    except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise InputError(archive, f"truncated or corrupt zip archive: {exc}") from None


def _extract_tar(archive: Path, root: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()  # reads the whole archive: truncation shows up here
            for m in members:
                problem = _member_problem(m.name)
                if problem is None and (m.issym() or m.islnk()):
                    problem = "link"
                if problem is None and not (m.isfile() or m.isdir()):
                    problem = "special file"
                if problem is not None:
                    raise InputError(archive, f"refusing to extract: {problem}", record=f"member {m.name!r}")
            tf.extractall(root, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise InputError(archive, f"refusing to extract: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise InputError(archive, f"truncated or corrupt tar archive: {exc}") from None
    except OSError as exc:
        if "compressed" in str(exc).lower() or "end-of-stream" in str(exc).lower():
            raise InputError(archive, f"truncated or corrupt tar archive: {exc}") from None
        raise


# --------------------------------------------------------------------------------------------
# Assembling the published folder


def _obtain(spec: FileSpec, *, key: str, cache_dir: Path, retries: int, backoff_s: float,
            progress: bool) -> tuple[Path, dict]:
    """The local file or folder for ``spec`` (fetched into the cache if it is a URL) + its record."""
    if spec.path:
        path = Path(spec.path).expanduser()
        if not path.exists():
            raise InputError(path, f"{key}.path: not found")
        info: dict[str, Any] = {"path": str(path)}
        if path.is_file():
            info["sha256"] = verify_sha256(path, spec.sha256, label=f"{path} ({key}.sha256)")
            info["size"] = path.stat().st_size
        elif spec.sha256:
            raise InputError(path, f"{key}.sha256 is set but {key}.path is a folder; clear one of them")
        return path, info
    result = fetch(
        spec.url, cache_dir / cache_name(spec.url), sha256=spec.sha256, retries=retries,
        backoff_s=backoff_s, progress=progress,
    )
    return result.path, {"url": spec.url, "sha256": result.sha256, "size": result.size}


def _check_annotation_file(path: Path, *, release: str, key: str) -> None:
    """A cheap sanity check (COCO-style top level, matching release); convert validates fully."""
    doc = read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) \
            or not isinstance(doc.get("annotations"), list):
        raise InputError(path, f"{key}: not a KINS/COCO annotation file (needs 'images' and 'annotations' lists)")
    found = release_from_keys(doc)
    if found is not None and found != release:
        raise InputError(
            path, f"{key}: looks like the KINS {found} release but data.kins.release is {release!r}"
        )


def _find_root(folder: Path, wanted: str) -> Path | None:
    """``folder`` or a folder up to two levels below it that contains ``wanted`` (e.g. a
    top-level wrapper folder some re-packed archives have)."""
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir())
    candidates += sorted(q for p in candidates[1:] for q in p.iterdir() if q.is_dir())
    for c in candidates:
        if (c / wanted).is_dir():
            return c
    return None


def _link_or_copy_tree(src: Path, dst: Path) -> None:
    """Populate ``dst`` with ``src``'s files: hard links when possible (no copy of gigabytes)."""
    def copy(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
        return d

    shutil.copytree(src, dst, copy_function=copy, dirs_exist_ok=True)


def _place_tree(source: Path, *, key: str, subdirs: Iterable[str], out: Path, progress: bool) -> None:
    """Put ``subdirs`` of an archive or folder ``source`` under ``out`` (same relative paths)."""
    subdirs = list(subdirs)
    if source.is_dir():
        root = _find_root(source, subdirs[0])
        if root is None:
            raise InputError(source, f"{key}: folder has no {subdirs[0]}/ (expected the KITTI layout)")
        for sub in subdirs:
            if (root / sub).is_dir():
                _link_or_copy_tree(root / sub, out / sub)
        return
    staging = out / f".extract-{key.replace('.', '-')}"
    extract_archive(source, staging, progress=progress)
    try:
        root = _find_root(staging, subdirs[0])
        if root is None:
            raise InputError(source, f"{key}: archive has no {subdirs[0]}/ (expected the KITTI layout)")
        for sub in subdirs:
            if (root / sub).is_dir():
                (out / sub).parent.mkdir(parents=True, exist_ok=True)
                if (out / sub).exists():
                    _link_or_copy_tree(root / sub, out / sub)
                else:
                    os.replace(root / sub, out / sub)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _require_files(out: Path, rel: str, pattern: str, *, what: str) -> int:
    n = sum(1 for _ in (out / rel).glob(pattern)) if (out / rel).is_dir() else 0
    if n == 0:
        raise InputError(what, f"no {pattern} files under {rel}/ after extraction")
    return n


def file_inventory(root: str | os.PathLike, *, progress: bool = True) -> list[dict[str, Any]]:
    """Every file under ``root`` (except manifest.json) as {path, size, sha256}, sorted by path."""
    from tqdm import tqdm

    root = Path(root)
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != MANIFEST_NAME
    )
    out = []
    for p in tqdm(files, desc="sha256", unit="file", disable=not progress, file=sys.stderr, leave=False):
        out.append({"path": p.relative_to(root).as_posix(), "size": p.stat().st_size, "sha256": sha256_file(p)})
    return out


def release_of_layout(root: str | os.PathLike) -> str | None:
    """Which KINS release's annotation file names are present under ``root``."""
    root = Path(root)
    for release, names in RELEASE_FILE_NAMES.items():
        if all((root / n).is_file() for n in names.values()):
            return release
    return None


def write_manifest(root: str | os.PathLike, *, source: str, release: str | None,
                   inputs: Mapping[str, Any], settings: Mapping[str, Any] | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Write ``root/manifest.json`` describing the folder; returns the manifest."""
    root = Path(root)
    files = file_inventory(root, progress=progress)
    counts = {
        "train_images": sum(1 for f in files if f["path"].startswith("training/image_2/")),
        "test_images": sum(1 for f in files if f["path"].startswith("testing/image_2/")),
        "train_labels": sum(1 for f in files if f["path"].startswith("training/label_2/")),
    }
    manifest = {
        "source": source,
        "release": release,
        "annotation_files": dict(RELEASE_FILE_NAMES[release]) if release in RELEASE_FILE_NAMES else {},
        "inputs": dict(inputs),
        "settings": dict(settings or {}),
        "counts": counts,
        "total_bytes": sum(f["size"] for f in files),
        "files": files,
    }
    (root / MANIFEST_NAME).write_bytes(dumps_json(manifest, indent=True))
    return manifest


def prepare_kins(
    out_dir: str | os.PathLike,
    *,
    release: str,
    train_annotations: FileSpec,
    test_annotations: FileSpec,
    images: FileSpec,
    labels: FileSpec | None = None,
    cache_dir: str | os.PathLike = "data/cache",
    retries: int = 5,
    backoff_s: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Fetch (or take local) KINS annotations and KITTI images; publish ``out_dir`` atomically.

    Each :class:`FileSpec` gives a URL (downloaded into ``cache_dir``, resumable, verified) or a
    local path (a file, an archive or an extracted folder for images/labels). Returns the manifest.
    """
    release = str(release)
    if release not in RELEASE_FILE_NAMES:
        raise InputError("data.kins.release", f"unknown KINS release {release!r}; expected 2020 or 2019")
    specs = {"annotations.train": train_annotations, "annotations.test": test_annotations, "images": images}
    for key, spec in specs.items():
        if spec.empty:
            raise InputError(f"data.kins.{key}", "set url or path (required for data.source: kins)")
    cache_dir = Path(cache_dir)
    names = RELEASE_FILE_NAMES[release]
    inputs: dict[str, Any] = {}
    # Everything that can fail on the network happens before the output folder is touched.
    obtained: dict[str, Path] = {}
    all_specs = dict(specs)
    if labels is not None and not labels.empty:
        all_specs["labels"] = labels
    for key, spec in all_specs.items():
        obtained[key], inputs[key] = _obtain(
            spec, key=f"data.kins.{key}", cache_dir=cache_dir, retries=retries, backoff_s=backoff_s,
            progress=progress,
        )
    with atomic_dir(out_dir) as tmp:
        for split in ("train", "test"):
            src = obtained[f"annotations.{split}"]
            if not src.is_file():
                raise InputError(src, f"data.kins.annotations.{split}: expected a JSON file")
            _check_annotation_file(src, release=release, key=f"data.kins.annotations.{split}")
            shutil.copyfile(src, tmp / names[split])
        _place_tree(obtained["images"], key="images", subdirs=IMAGE_DIRS, out=tmp, progress=progress)
        for rel in IMAGE_DIRS:
            _require_files(tmp, rel, "*.png", what=str(obtained["images"]))
        if "labels" in obtained:
            _place_tree(obtained["labels"], key="labels", subdirs=[LABEL_DIR], out=tmp, progress=progress)
            _require_files(tmp, LABEL_DIR, "*.txt", what=str(obtained["labels"]))
        manifest = write_manifest(tmp, source="kins", release=release, inputs=inputs, progress=progress)
    return manifest


def prepare_synthetic(
    out_dir: str | os.PathLike,
    *,
    n_train: int,
    n_test: int,
    seed: int,
    width: int,
    height: int,
    annotators: int,
    annotator_images: int,
    workers: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate the embedded synthetic world into ``out_dir`` (atomically); returns the manifest."""
    from asn.data import synthetic

    settings = dict(
        n_train=n_train, n_test=n_test, seed=seed, width=width, height=height,
        annotators=annotators, annotator_images=annotator_images, workers=workers,
    )
    with atomic_dir(out_dir) as tmp:
        synthetic.synthesize(tmp, progress=progress, **settings)
        release = release_of_layout(tmp)
        if release is None:
            raise InputError(tmp, "synthetic generator did not write the KINS annotation files")
        for rel in IMAGE_DIRS:
            if n_train and rel.startswith("training") or n_test and rel.startswith("testing"):
                _require_files(tmp, rel, "*.png", what="synthetic generator")
        manifest = write_manifest(
            tmp, source="synthetic", release=release, inputs={}, settings=settings, progress=progress
        )
    return manifest
