"""The official Python SDK's filesystem (sprite.filesystem()), unchanged,
against sprited: pathlib-like reads, writes, listing, directories, renames,
copies, modes, and the errors it maps from errno codes."""

import pytest
from sprites.exceptions import (
    DirectoryNotEmptyError,
    FileNotFoundError_,
    IsADirectoryError_,
    NotADirectoryError_,
    PermissionError_,
)


def test_read_write_and_stat(sprite):
    fs = sprite.filesystem("/home/sprite")
    p = fs / "notes" / "hello world.txt"
    p.write_text("hi from python\n")
    assert p.read_text() == "hi from python\n"
    assert p.exists() and p.is_file()
    st = p.stat()
    assert (st.name, st.size, st.mode, st.is_dir) == ("hello world.txt", 15, "0644", False)
    assert st.path == "/home/sprite/notes/hello world.txt"
    assert st.mod_time.year >= 2024

    data = bytes(range(256)) * 4096
    (fs / "blob.bin").write_bytes(data, mode=0o600)
    assert (fs / "blob.bin").read_bytes() == data
    assert (fs / "blob.bin").stat().mode == "0600"
    # The files belong to the sprite's own user.
    out = sprite.run("stat", "-c", "%U %a", "/home/sprite/blob.bin", capture_output=True)
    assert out.stdout == b"sprite 600\n"
    # Relative to the working directory (the SDK's default is /).
    assert sprite.filesystem().path("home/sprite/notes/hello world.txt").read_text() == "hi from python\n"


def test_directories(sprite):
    fs = sprite.filesystem("/home/sprite")
    (fs / "proj").mkdir()
    (fs / "proj" / "src" / "deep").mkdir(parents=True)
    (fs / "proj").mkdir(exist_ok=True)
    with pytest.raises(FileNotFoundError_):
        (fs / "nowhere" / "x").mkdir()
    (fs / "proj" / "a.txt").write_text("a")
    (fs / "proj" / "b.txt").write_text("b")
    assert sorted((fs / "proj").listdir()) == ["a.txt", "b.txt", "src"]
    assert [p.name for p in (fs / "proj").iterdir()] == ["a.txt", "b.txt", "src"]
    # mkdir leaves no .keep behind.
    assert (fs / "proj" / "src" / "deep").listdir() == []

    with pytest.raises(DirectoryNotEmptyError):
        (fs / "proj" / "src").rmdir()
    (fs / "proj" / "src" / "deep").rmdir()
    (fs / "proj" / "a.txt").unlink()
    (fs / "proj" / "a.txt").unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError_):
        (fs / "proj" / "a.txt").unlink()
    (fs / "proj").rmtree()
    assert not (fs / "proj").exists()


def test_rename_copy_chmod_touch(sprite):
    fs = sprite.filesystem("/home/sprite")
    src = fs / "run.sh"
    src.write_text("#!/bin/sh\necho ran\n")
    src.chmod(0o755)
    assert src.stat().mode == "0755"
    assert sprite.run("/home/sprite/run.sh", capture_output=True).stdout == b"ran\n"

    moved = src.rename("moved.sh")
    assert moved.name == "moved.sh" and not src.exists()
    copy = moved.copy_to(fs / "copy.sh")
    assert copy.read_text() == "#!/bin/sh\necho ran\n"
    assert copy.stat().mode == "0755"

    (fs / "tree" / "x").mkdir(parents=True)
    (fs / "tree" / "x" / "f.txt").write_text("f")
    (fs / "tree").copy_to(fs / "tree2")
    assert (fs / "tree2" / "x" / "f.txt").read_text() == "f"
    (fs / "tree2").chmod(0o700, recursive=True)
    out = sprite.run("stat", "-c", "%a", "/home/sprite/tree2/x/f.txt", capture_output=True)
    assert out.stdout == b"700\n"

    t = fs / "touched"
    t.touch()
    assert t.exists() and t.read_bytes() == b""


def test_errors_map_to_exceptions(sprite):
    fs = sprite.filesystem("/")
    with pytest.raises(FileNotFoundError_):
        (fs / "no" / "such" / "file").read_text()
    with pytest.raises(IsADirectoryError_):
        (fs / "home" / "sprite").read_bytes()
    with pytest.raises(PermissionError_):
        (fs / "etc" / "passwd").write_text("x")
    (fs / "home/sprite/plain").write_text("x")
    with pytest.raises(NotADirectoryError_):
        (fs / "home/sprite/plain/child").write_text("x")
    # Read-only places stay read-only, whatever the path says.
    with pytest.raises(PermissionError_):
        (fs / "proc" / "version").write_text("x")
    # `..` cannot leave the sprite: it ends at the sprite's own root.
    inside = (fs / "home/sprite/../../../../etc/passwd").read_text()
    assert "sprite:x:1000" in inside
