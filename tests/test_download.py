"""The `download` stage against a real HTTP server on 127.0.0.1 (tests/test_download_server.py).

Covers resumable fetch (interrupted transfer, server ignoring Range, retries with backoff),
sha256 verification, safe and atomic extraction (truncated, `../escape`, absolute and symlink
members), the published folder layout and manifest, local paths, config errors and the
synthetic source.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import pytest
import yaml

from asn.cli import main
from asn.data import download
from asn.data.download import FileSpec, extract_archive, fetch
from asn.errors import InputError

sys.path.insert(0, str(Path(__file__).parent))
from test_download_server import RangeFileServer  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def image_members(n_train: int = 3, n_test: int = 2, prefix: str = "") -> dict[str, bytes]:
    out = {}
    for split, n in (("training", n_train), ("testing", n_test)):
        for i in range(n):
            # Distinct, partly random content so sizes and hashes differ between files.
            out[f"{prefix}{split}/image_2/{i:06d}.png"] = PNG_MAGIC + f"{split}-{i}".encode() * (50 + i)
    return out


def label_members(n: int = 3) -> dict[str, bytes]:
    return {f"training/label_2/{i:06d}.txt": f"Car 0.00 0 -1.58 {i} 1 2 3 1.5 1.6 3.9 1 2 3 0\n".encode() for i in range(n)}


def kins_2020(split: str, n_images: int) -> bytes:
    folder = "training" if split == "train" else "testing"
    doc = {
        "images": [{"id": i + 1, "file_name": f"{i:06d}.png", "width": 64, "height": 32} for i in range(n_images)],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "a_segm": [[1, 1, 9, 1, 9, 9]], "i_segm": [[1, 1, 9, 1, 9, 9]],
             "a_bbox": [1, 1, 8, 8], "i_bbox": [1, 1, 8, 8], "a_area": 32.0, "i_area": 32.0, "oco_id": 0, "ico_id": 1}
        ],
        "categories": [{"id": 4, "name": "car", "supercategory": "vehicle"}],
        "info": {"folder": folder},
    }
    return json.dumps(doc).encode()


def kins_2019(split: str) -> bytes:
    doc = {
        "images": [{"id": 1, "file_name": "000000.png", "width": 64, "height": 32}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 4, "segmentation": [[1, 1, 9, 1, 9, 9]],
                         "inmodal_seg": {"size": [32, 64], "counts": "abc"}, "bbox": [1, 1, 8, 8], "area": 32.0}],
        "categories": [{"id": 4, "name": "car"}],
    }
    return json.dumps(doc).encode()


@pytest.fixture
def kins_files() -> dict[str, bytes]:
    return {
        "update_train_2020.json": kins_2020("train", 3),
        "update_test_2020.json": kins_2020("test", 2),
        "data_object_image_2.zip": make_zip(image_members()),
        "data_object_label_2.zip": make_zip(label_members()),
    }


def write_params(path: Path, *, server: RangeFileServer | None = None, files: dict[str, bytes] | None = None,
                 checksums: bool = True, **kins_overrides) -> Path:
    def entry(name: str) -> dict:
        if server is None:
            return {"url": "", "sha256": "", "path": ""}
        return {"url": server.url(name), "sha256": sha(files[name]) if checksums else "", "path": ""}

    kins = {
        "release": "2020",
        "annotations": {"train": entry("update_train_2020.json"), "test": entry("update_test_2020.json")},
        "images": entry("data_object_image_2.zip"),
        "labels": entry("data_object_label_2.zip"),
    }
    kins.update(kins_overrides)
    params = {
        "data": {"source": "kins", "kins": kins, "retries": 2, "backoff_s": 0.001},
        "synth": {"train": 2, "test": 1, "seed": 0, "width": 64, "height": 32, "annotators": 0,
                  "annotator_images": 0, "workers": 1},
    }
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_cli(params: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(["download", "--params", str(params), "--out", str(out), "--cache", str(cache), "--no-progress", *extra])


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- fetch --------------------------------------------------------------------------------------


def test_fetch_downloads_verifies_and_reuses_the_cache(tmp_path):
    data = bytes(range(256)) * 3000
    with RangeFileServer(files={"f.zip": data}) as server:
        result = fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=0, progress=False)
        again = fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=0, progress=False)
    assert (tmp_path / "f.zip").read_bytes() == data
    assert (result.size, result.sha256, result.bytes_transferred, result.cached) == (len(data), sha(data), len(data), False)
    assert again.cached and again.bytes_transferred == 0
    assert len(server.log) == 1  # the second call made no request
    assert not (tmp_path / "f.zip.part").exists()
    assert json.loads((tmp_path / "f.zip.json").read_text())["sha256"] == sha(data)


def test_fetch_resumes_an_interrupted_transfer_from_the_partial_file(tmp_path):
    data = bytes(range(256)) * 4096  # 1 MiB
    cut = 300_000
    with RangeFileServer(files={"f.zip": data}, cut_after={"f.zip": [cut]}) as server:
        with pytest.raises(InputError, match="download failed after 1 attempts"):
            fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=0, progress=False)
        part = tmp_path / "f.zip.part"
        assert part.stat().st_size == cut and not (tmp_path / "f.zip").exists()
        result = fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=0, progress=False)
    first, second = server.requests_for("f.zip")
    assert first.range is None and first.bytes_sent == cut
    assert second.range == f"bytes={cut}-" and second.status == 206
    assert second.bytes_sent == len(data) - cut  # only the missing bytes moved
    assert server.bytes_served() == len(data)
    assert (tmp_path / "f.zip").read_bytes() == data
    assert result.resumed_from == cut and result.bytes_transferred == len(data) - cut


def test_fetch_retries_with_backoff_and_resumes_within_one_call(tmp_path):
    data = bytes(range(256)) * 2048
    delays = []
    with RangeFileServer(files={"f.zip": data}, cut_after={"f.zip": [100_000, 50_000]},
                         fail_statuses={"f.zip": [503]}) as server:
        result = fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=3, backoff_s=0.5,
                       progress=False, sleep=delays.append)
    ranges = [r.range for r in server.requests_for("f.zip")]
    assert ranges == [None, None, "bytes=100000-", "bytes=150000-"]
    assert delays == [0.5, 1.0, 2.0]  # exponential backoff
    assert result.attempts == 4 and (tmp_path / "f.zip").read_bytes() == data
    assert server.bytes_served() == len(data)


def test_fetch_gives_up_after_the_configured_retries(tmp_path):
    with RangeFileServer(files={"f.zip": b"x" * 1000}, fail_statuses={"f.zip": [503] * 10}) as server:
        with pytest.raises(InputError, match=r"f.zip: download failed after 3 attempts: .*503"):
            fetch(server.url("f.zip"), tmp_path / "f.zip", retries=2, backoff_s=0, progress=False)
    assert len(server.log) == 3


def test_fetch_restarts_when_the_server_ignores_range(tmp_path):
    data = bytes(range(256)) * 1000
    (tmp_path / "f.zip.part").write_bytes(b"garbage-from-before")
    with RangeFileServer(files={"f.zip": data}, ignore_range=True) as server:
        (tmp_path / "f.zip.part.json").write_text(json.dumps({"url": server.url("f.zip")}))
        result = fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=0, progress=False)
    assert server.log[0].range == "bytes=19-" and server.log[0].status == 200
    assert (tmp_path / "f.zip").read_bytes() == data and result.sha256 == sha(data)


def test_fetch_completed_partial_file_gets_416_and_is_accepted(tmp_path):
    data = b"abc" * 1000
    (tmp_path / "f.zip.part").write_bytes(data)
    with RangeFileServer(files={"f.zip": data}) as server:
        (tmp_path / "f.zip.part.json").write_text(json.dumps({"url": server.url("f.zip")}))
        result = fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=0, progress=False)
    assert server.log[0].status == 416 and result.bytes_transferred == 0
    assert (tmp_path / "f.zip").read_bytes() == data


def test_fetch_wrong_checksum_is_an_error_and_discards_the_download(tmp_path):
    good, wrong = b"good" * 1000, b"evil" * 1000
    with RangeFileServer(files={"f.zip": wrong}) as server:
        with pytest.raises(InputError, match=f"sha256 mismatch: expected {sha(good)}, got {sha(wrong)}"):
            fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(good), retries=3, progress=False)
    assert len(server.log) == 1  # a mismatch is not retried
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_fetch_404_is_a_clear_error_without_retries(tmp_path):
    with RangeFileServer(files={}) as server:
        with pytest.raises(InputError, match="HTTP 404"):
            fetch(server.url("nope.zip"), tmp_path / "nope.zip", retries=3, backoff_s=0, progress=False)
    assert len(server.log) == 1


# -- extraction ---------------------------------------------------------------------------------


def malicious_zip(kind: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("training/image_2/000000.png", PNG_MAGIC + b"ok")
        if kind == "dotdot":
            zf.writestr("../escape", b"pwned")
        elif kind == "absolute":
            info = zipfile.ZipInfo("training/x")
            info.filename = "/tmp/escape-abs"  # ZipInfo() strips a leading slash; set it raw
            zf.writestr(info, b"pwned")
        elif kind == "symlink":
            info = zipfile.ZipInfo("training/image_2/link.png")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "../../../escape")
        zf.writestr("testing/image_2/000000.png", PNG_MAGIC + b"ok")
    return buf.getvalue()


@pytest.mark.parametrize("kind,reason", [("dotdot", "'..' in path"), ("absolute", "absolute path"),
                                         ("symlink", "symbolic link")])
def test_extract_refuses_zip_members_that_escape(tmp_path, kind, reason):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(malicious_zip(kind))
    target = tmp_path / "sub" / "out"
    with pytest.raises(InputError, match=f"evil.zip: member .*: refusing to extract: {reason}"):
        extract_archive(archive, target, progress=False)
    assert not target.exists()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == []  # no temp folder left
    assert not (tmp_path / "escape").exists() and not (tmp_path / "sub" / "escape").exists()
    assert not Path("/tmp/escape-abs").exists()


def test_extract_refuses_tar_members_that_escape(tmp_path):
    for name, member in (("dotdot.tar", "../escape"), ("abs.tar", "/tmp/escape-abs-tar")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            info = tarfile.TarInfo(member)
            info.size = 5
            tf.addfile(info, io.BytesIO(b"pwned"))
        (tmp_path / name).write_bytes(buf.getvalue())
        with pytest.raises(InputError, match="refusing to extract"):
            extract_archive(tmp_path / name, tmp_path / "out", progress=False)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("training/image_2/x.png")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../escape"
        tf.addfile(info)
    (tmp_path / "link.tar").write_bytes(buf.getvalue())
    with pytest.raises(InputError, match="link.tar: member .*: refusing to extract: link"):
        extract_archive(tmp_path / "link.tar", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape").exists()
    assert not Path("/tmp/escape-abs-tar").exists()


def test_extract_tar_gz_and_reject_truncated_archives(tmp_path):
    members = image_members(2, 1)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    good = tmp_path / "images.tar.gz"
    good.write_bytes(buf.getvalue())
    extract_archive(good, tmp_path / "out", progress=False)
    assert tree(tmp_path / "out") == members

    cut_tgz = tmp_path / "cut.tar.gz"
    cut_tgz.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="cut.tar.gz: .*(truncated or corrupt)"):
        extract_archive(cut_tgz, tmp_path / "out", progress=False)
    assert tree(tmp_path / "out") == members  # the previous extraction is untouched

    data = make_zip(image_members())
    cut_zip = tmp_path / "cut.zip"
    cut_zip.write_bytes(data[: len(data) - 40])  # loses the end-of-central-directory record
    with pytest.raises(InputError, match=r"cut.zip: not a readable zip or tar archive \(truncated or corrupt\)"):
        extract_archive(cut_zip, tmp_path / "out2", progress=False)
    corrupt = bytearray(data)
    corrupt[60:70] = b"X" * 10  # inside the first member's data: CRC-32 check fails
    (tmp_path / "crc.zip").write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match="crc.zip: truncated or corrupt zip archive: Bad CRC-32"):
        extract_archive(tmp_path / "crc.zip", tmp_path / "out2", progress=False)
    assert not (tmp_path / "out2").exists()


# -- the stage ------------------------------------------------------------------------------------


def test_stage_downloads_kins_and_publishes_the_layout(tmp_path, kins_files):
    out, cache = tmp_path / "data" / "raw", tmp_path / "cache"
    with RangeFileServer(files=dict(kins_files)) as server:
        params = write_params(tmp_path / "params.yaml", server=server, files=kins_files)
        assert run_cli(params, out, cache) == 0
    expected = {**image_members(), **label_members(),
                "update_train_2020.json": kins_files["update_train_2020.json"],
                "update_test_2020.json": kins_files["update_test_2020.json"]}
    got = tree(out)
    manifest = json.loads(got.pop("manifest.json"))
    assert got == expected
    assert manifest["source"] == "kins" and manifest["release"] == "2020"
    assert manifest["counts"] == {"train_images": 3, "test_images": 2, "train_labels": 3}
    assert {f["path"]: (f["size"], f["sha256"]) for f in manifest["files"]} == {
        k: (len(v), sha(v)) for k, v in expected.items()
    }
    assert manifest["inputs"]["images"]["sha256"] == sha(kins_files["data_object_image_2.zip"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["raw"]  # no temp folder left
    assert (cache / "data_object_image_2.zip").is_file()


def test_stage_failures_leave_the_previous_folder_untouched(tmp_path, kins_files, capsys):
    out, cache = tmp_path / "data" / "raw", tmp_path / "cache"
    files = dict(kins_files)
    with RangeFileServer(files=files) as server:
        params = write_params(tmp_path / "params.yaml", server=server, files=kins_files)
        assert run_cli(params, out, cache) == 0
        before = tree(out)

        # 1. wrong checksum: the server now serves another file under the same name.
        (cache / "data_object_image_2.zip").unlink()
        files["data_object_image_2.zip"] = make_zip(image_members(4, 2))
        assert run_cli(params, out, cache) == 2
        assert "sha256 mismatch" in capsys.readouterr().err
        assert tree(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["raw"]
        assert not (cache / "data_object_image_2.zip.part").exists()

        # 2. truncated transfer (every attempt cut): clear error, partial file kept for resume.
        files["data_object_image_2.zip"] = kins_files["data_object_image_2.zip"]
        server.cut_after["data_object_image_2.zip"] = [500, 500, 500]
        assert run_cli(params, out, cache) == 2
        err = capsys.readouterr().err
        assert "asn download: error:" in err and "download failed after 3 attempts" in err
        assert tree(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["raw"]
        assert (cache / "data_object_image_2.zip.part").stat().st_size == 1500
        n_before = len(server.log)
        assert run_cli(params, out, cache) == 0  # resumes from byte 1500
        resumed = server.log[n_before:]
        assert [r.range for r in resumed] == ["bytes=1500-"]
        assert resumed[0].bytes_sent == len(kins_files["data_object_image_2.zip"]) - 1500
        assert tree(out) == before

        # 3. a malicious archive (no checksum configured, so only extraction can stop it).
        params = write_params(tmp_path / "params.yaml", server=server, files=kins_files, checksums=False)
        (cache / "data_object_image_2.zip").unlink()
        files["data_object_image_2.zip"] = malicious_zip("dotdot")
        assert run_cli(params, out, cache) == 2
        assert "refusing to extract: '..' in path" in capsys.readouterr().err
        assert tree(out) == before and sorted(p.name for p in out.parent.iterdir()) == ["raw"]
        assert not (tmp_path / "data" / "escape").exists() and not (tmp_path / "escape").exists()

        # 4. a truncated archive served in full (the file itself is cut).
        (cache / "data_object_image_2.zip").unlink()
        files["data_object_image_2.zip"] = kins_files["data_object_image_2.zip"][:-30]
        assert run_cli(params, out, cache) == 2
        assert "truncated or corrupt" in capsys.readouterr().err
        assert tree(out) == before


def test_stage_takes_local_archives_and_extracted_folders(tmp_path, kins_files):
    local = tmp_path / "have"
    local.mkdir()
    for name, data in kins_files.items():
        (local / name).write_bytes(data)
    extracted = local / "kitti"
    for name, data in image_members().items():
        (extracted / name).parent.mkdir(parents=True, exist_ok=True)
        (extracted / name).write_bytes(data)
    expected = {**image_members(), "update_train_2020.json": kins_files["update_train_2020.json"],
                "update_test_2020.json": kins_files["update_test_2020.json"]}
    for images_path, labels in ((local / "data_object_image_2.zip", True), (extracted, False)):
        kins_entry = {
            "annotations": {"train": {"path": str(local / "update_train_2020.json"), "sha256": sha(kins_files["update_train_2020.json"])},
                            "test": {"path": str(local / "update_test_2020.json")}},
            "images": {"path": str(images_path)},
            "labels": {"path": str(local / "data_object_label_2.zip")} if labels else {"url": "", "path": ""},
        }
        params = write_params(tmp_path / "params.yaml", **kins_entry)
        out = tmp_path / f"raw-{labels}"
        assert run_cli(params, out, tmp_path / "cache") == 0
        got = tree(out)
        manifest = json.loads(got.pop("manifest.json"))
        assert got == ({**expected, **label_members()} if labels else expected)
        assert manifest["inputs"]["images"]["path"] == str(images_path)
    assert not (tmp_path / "cache").exists()  # nothing was downloaded


def test_stage_2019_release_keeps_original_names_and_checks_the_release(tmp_path, kins_files, capsys):
    local = tmp_path / "have"
    local.mkdir()
    (local / "instances_train.json").write_bytes(kins_2019("train"))
    (local / "instances_val.json").write_bytes(kins_2019("val"))
    (local / "images.zip").write_bytes(kins_files["data_object_image_2.zip"])
    params = write_params(
        tmp_path / "params.yaml", release="2019",
        annotations={"train": {"path": str(local / "instances_train.json")}, "test": {"path": str(local / "instances_val.json")}},
        images={"path": str(local / "images.zip")}, labels={"path": ""},
    )
    assert run_cli(params, tmp_path / "raw", tmp_path / "cache") == 0
    assert (tmp_path / "raw" / "instances_val.json").read_bytes() == kins_2019("val")
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text())["release"] == "2019"
    assert run_cli(params, tmp_path / "raw", tmp_path / "cache", "--set", "data.kins.release=2020") == 2
    assert "looks like the KINS 2019 release but data.kins.release is '2020'" in capsys.readouterr().err


def test_stage_config_errors_exit_2_with_the_key_to_set(tmp_path, capsys):
    params = write_params(tmp_path / "params.yaml")  # every url and path empty
    assert run_cli(params, tmp_path / "raw", tmp_path / "cache") == 2
    err = capsys.readouterr().err
    assert "data.kins.annotations.train: set url or path" in err and str(params) in err
    assert run_cli(tmp_path / "missing.yaml", tmp_path / "raw", tmp_path / "cache") == 2
    assert "params file not found" in capsys.readouterr().err
    assert run_cli(params, tmp_path / "raw", tmp_path / "cache", "--set", "data.source=ftp") == 2
    assert "data.source: expected 'synthetic' or 'kins', got 'ftp'" in capsys.readouterr().err
    bad = write_params(tmp_path / "bad.yaml", annotations={"train": {"path": "a.json"}, "test": {"path": "b.json"}},
                       images={"url": "http://127.0.0.1:1/x.zip", "sha256": "123"})
    assert run_cli(bad, tmp_path / "raw", tmp_path / "cache") == 2
    assert "data.kins.images.sha256: not a sha256 hex digest" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists()


def fake_synthesize(out_dir, *, n_train, n_test, seed, width, height, annotators, annotator_images, workers, progress):
    """Stands in for asn.data.synthetic.synthesize with the same signature and layout."""
    out_dir = Path(out_dir)
    for name, data in image_members(n_train, n_test).items():
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_bytes(data)
    (out_dir / "update_train_2020.json").write_bytes(kins_2020("train", n_train))
    (out_dir / "update_test_2020.json").write_bytes(kins_2020("test", n_test))
    for i in range(n_train):
        (out_dir / "training/label_2").mkdir(parents=True, exist_ok=True)
        (out_dir / f"training/label_2/{i:06d}.txt").write_text("Car\n")


def test_stage_synthetic_source_with_the_generator_contract(tmp_path, monkeypatch):
    calls = []

    def recording(out_dir, **kwargs):
        calls.append(kwargs)
        fake_synthesize(out_dir, **kwargs)

    monkeypatch.setitem(sys.modules, "asn.data.synthetic", types.SimpleNamespace(synthesize=recording))
    import asn.data

    monkeypatch.setattr(asn.data, "synthetic", sys.modules["asn.data.synthetic"], raising=False)
    params = write_params(tmp_path / "params.yaml")
    out = tmp_path / "raw"
    assert run_cli(params, out, tmp_path / "cache", "--set", "data.source=synthetic", "--set", "synth.train=3") == 0
    assert calls == [dict(n_train=3, n_test=1, seed=0, width=64, height=32, annotators=0, annotator_images=0,
                          workers=1, progress=False)]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "synthetic" and manifest["release"] == "2020"
    assert manifest["counts"] == {"train_images": 3, "test_images": 1, "train_labels": 3}
    assert manifest["settings"]["n_train"] == 3
    assert {f["path"] for f in manifest["files"]} == set(tree(out)) - {"manifest.json"}


def test_stage_synthetic_source_end_to_end(tmp_path):
    pytest.importorskip("asn.data.synthetic")
    params = write_params(tmp_path / "params.yaml")
    out = tmp_path / "raw"
    assert run_cli(params, out, tmp_path / "cache", "--set", "data.source=synthetic") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"] == "synthetic" and manifest["release"] == "2020"
    assert manifest["counts"]["train_images"] == 2 and manifest["counts"]["test_images"] == 1
    for f in manifest["files"]:
        assert sha((out / f["path"]).read_bytes()) == f["sha256"]
    assert (out / "update_train_2020.json").is_file() and (out / "update_test_2020.json").is_file()


def test_file_spec_from_mapping():
    assert FileSpec.from_mapping({"url": " http://h/x.zip ", "sha256": "A" * 64}, key="k") == FileSpec(
        url="http://h/x.zip", sha256="a" * 64)
    assert FileSpec.from_mapping("/some/where.zip", key="k") == FileSpec(path="/some/where.zip")
    assert FileSpec.from_mapping(None, key="k").empty
    with pytest.raises(InputError, match="k: unknown keys"):
        FileSpec.from_mapping({"uri": "x"}, key="k")
    assert FileSpec.from_mapping({"url": "file:///data/x%20y.zip"}, key="k") == FileSpec(path="/data/x y.zip")
    assert download.cache_name("http://h/a/b%20c.zip?x=1") == "b_c.zip"


def test_fetch_rehashes_a_cached_file_and_replaces_it_when_edited(tmp_path):
    data = b"payload" * 5000
    with RangeFileServer(files={"f.zip": data}) as server:
        fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=0, progress=False)
        (tmp_path / "f.zip").write_bytes(b"X" * len(data))  # same size, different content
        result = fetch(server.url("f.zip"), tmp_path / "f.zip", sha256=sha(data), retries=0, progress=False)
        with pytest.raises(InputError, match="not a usable http"):
            fetch("ftp://127.0.0.1/f.zip", tmp_path / "g.zip", retries=5, progress=False)
    assert not result.cached and len(server.log) == 2
    assert (tmp_path / "f.zip").read_bytes() == data
