"""SHA256SUMS verification of data set folders (medfm.data.checksums, `medfm verify-data`)."""
import hashlib

import pytest

from medfm.cli import main
from medfm.data.checksums import read_sha256sums, verify_sha256sums
from medfm.data.errors import CorruptFileError, DataFileMissingError


def _dataset(root, name="chase_db1"):
    folder = root / name
    (folder / "imgs").mkdir(parents=True)
    files = {"imgs/a.png": b"first image", "imgs/b.png": b"second image", "PROVENANCE.md": b"source"}
    for rel, data in files.items():
        (folder / rel).write_bytes(data)
    (folder / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(d).hexdigest()}  ./{r}\n" for r, d in files.items()))
    return folder


def test_changed_and_missing_files_are_found(tmp_path):
    folder = _dataset(tmp_path)
    assert read_sha256sums(folder)["imgs/a.png"] == hashlib.sha256(b"first image").hexdigest()
    assert verify_sha256sums(folder) == {"ok": ["PROVENANCE.md", "imgs/a.png", "imgs/b.png"], "missing": [], "mismatched": []}
    (folder / "imgs" / "a.png").write_bytes(b"first imagE")  # same size, one byte changed
    (folder / "imgs" / "b.png").unlink()
    assert verify_sha256sums(folder) == {"ok": ["PROVENANCE.md"], "missing": ["imgs/b.png"], "mismatched": ["imgs/a.png"]}


def test_bad_sums_files_are_clear_errors(tmp_path):
    folder = _dataset(tmp_path)
    sums = folder / "SHA256SUMS"
    good = sums.read_text()
    sums.write_text(good + "not-a-digest  imgs/c.png\n")
    with pytest.raises(CorruptFileError, match="line 4: expected '<64 hex digits>  <path>'"):
        read_sha256sums(folder)
    sums.write_text(good + f"{'0' * 64}  ../../etc/passwd\n")
    with pytest.raises(CorruptFileError, match="leaves the data set folder"):
        read_sha256sums(folder)
    sums.write_text(good + good.splitlines()[0] + "\n")
    with pytest.raises(CorruptFileError, match="listed twice"):
        read_sha256sums(folder)
    sums.unlink()
    with pytest.raises(DataFileMissingError, match="no SHA256SUMS"):
        read_sha256sums(folder)


def test_cli_verify_data(tmp_path, capsys):
    folder = _dataset(tmp_path)
    _dataset(tmp_path, "vqa_rad")
    assert main(["verify-data", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["chase_db1: 3 ok, 0 missing, 0 changed", "vqa_rad: 3 ok, 0 missing, 0 changed"]
    (folder / "imgs" / "a.png").write_bytes(b"edited")
    assert main(["verify-data", "chase_db1", "--data-root", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip() == "chase_db1: 2 ok, 0 missing, 1 changed (e.g. imgs/a.png)"
    assert main(["verify-data", "chase_db", "--data-root", str(tmp_path)]) == 2
    assert "did you mean 'chase_db1'" in capsys.readouterr().err


def test_medmnist_table_is_the_loaders(write_medmnist):
    """verify-data checks medmnist/ against the md5s every load checks: INFO's MD5 / MD5_<size>."""
    from medfm.data.medmnist import expected_md5, npz_md5s
    from medfm.data.medmnist_info import INFO

    table = npz_md5s()
    assert table["pneumoniamnist.npz"] == INFO["pneumoniamnist"]["MD5"] == expected_md5("pneumoniamnist")
    assert table["adrenalmnist3d_64.npz"] == INFO["adrenalmnist3d"]["MD5_64"] == expected_md5("adrenalmnist3d", 64)
    root = write_medmnist("breastmnist")  # registers the generated file's md5 in INFO
    written = (root / "medmnist" / "breastmnist.npz").read_bytes()
    assert npz_md5s()["breastmnist.npz"] == hashlib.md5(written).hexdigest()


def test_medmnist_files_changed_and_unknown(write_medmnist):
    """medmnist/ has no SHA256SUMS and verify-data passed over it; its npz were checked only when loaded."""
    from medfm.data.checksums import verify_medmnist_md5s

    folder = write_medmnist("pneumoniamnist") / "medmnist"
    write_medmnist("breastmnist")
    (folder / "pneumonia.npz").write_bytes(b"not a released file name")
    (folder / "PROVENANCE.md").write_text("not an npz: not looked at")
    assert verify_medmnist_md5s(folder) == {"ok": ["breastmnist.npz", "pneumoniamnist.npz"], "mismatched": [],
                                            "unknown": ["pneumonia.npz"]}
    data = bytearray((folder / "breastmnist.npz").read_bytes())
    data[-1] ^= 1  # same size, one bit changed
    (folder / "breastmnist.npz").write_bytes(bytes(data))
    assert verify_medmnist_md5s(folder) == {"ok": ["pneumoniamnist.npz"], "mismatched": ["breastmnist.npz"],
                                            "unknown": ["pneumonia.npz"]}


def test_cli_verify_data_checks_medmnist(tmp_path, capsys, write_medmnist):
    _dataset(tmp_path)
    folder = write_medmnist("pneumoniamnist") / "medmnist"
    assert main(["verify-data", "--data-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["chase_db1: 3 ok, 0 missing, 0 changed",
                                                    "medmnist: 1 ok, 0 changed, 0 unknown"]
    (folder / "extra.npz").write_bytes(b"x")  # unknown: listed, not a failure (as sha256sum -c ignores unlisted files)
    assert main(["verify-data", "medmnist", "--data-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == ("medmnist: 1 ok, 0 changed, 1 unknown; unknown (no released "
                                               "MedMNIST file name, not checked): extra.npz")
    (folder / "pneumoniamnist.npz").write_bytes((folder / "pneumoniamnist.npz").read_bytes()[:-10])  # truncated
    assert main(["verify-data", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "chase_db1: 3 ok, 0 missing, 0 changed"
    assert out[1].startswith("medmnist: 0 ok, 1 changed, 1 unknown (e.g. pneumoniamnist.npz)")
    assert main(["verify-data", "medmnst", "--data-root", str(tmp_path)]) == 2
    assert "did you mean 'medmnist'" in capsys.readouterr().err
