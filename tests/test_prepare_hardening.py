"""data/prepare.py --from parses the bytes it hashed (issue 22 item 13): a release file swapped for an edited copy
after its hash was checked, and before it was read again, was accepted (1 in 8 tries). The swap is made to happen
at exactly that moment here, by wrapping the hash function prepare.py calls."""

import shutil
from pathlib import Path

from test_prepare import edited_copy, prepare


def test_a_file_swapped_after_its_hash_is_not_read(shared_data, tmp_path, capsys, monkeypatch):
    release = shared_data / "limr-release"
    src = tmp_path / "src"
    shutil.copytree(release, src)
    edited = edited_copy(release, tmp_path / "edited", "math8k.json", '"answer": "118"', '"answer": "918"')
    real_hash = prepare.git_blob_sha1
    swapped = []

    def hash_then_swap(data: bytes) -> str:
        """The real hash; the first time math8k.json's bytes are hashed, the file is replaced right after."""
        digest = real_hash(data)
        if not swapped and digest == prepare.RELEASE_FILES["math8k.json"][1]:
            (src / "math8k.json").write_bytes((edited / "math8k.json").read_bytes())
            swapped.append(True)
        return digest

    monkeypatch.setattr(prepare, "git_blob_sha1", hash_then_swap)
    rc = prepare.main(["--from", str(src), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert swapped and rc == 0, captured.err
    assert '"answer": "918"' in (src / "math8k.json").read_text(encoding="utf-8")  # the swap did happen
    written = (tmp_path / "out" / "math8k.json").read_text(encoding="utf-8")
    assert '"answer": "118"' in written and '"answer": "918"' not in written  # what was hashed is what was read


def test_errors_in_a_verified_copy_name_the_users_folder(shared_data, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(shared_data / "limr-release", src)
    (src / "limr.json").write_text("[{", encoding="utf-8")  # no pinned hash: checked after the copy is read
    assert prepare.main(["--from", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {src / 'limr.json'}: not valid JSON"), err
    assert "limr-verified-" not in err and err.count("\n") == 1
    assert not Path(tmp_path / "out").exists()
