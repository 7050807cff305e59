"""Bad command-line input gives one clean line, never a traceback, and is never silently
accepted (issue 24 item 10)."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest
from PIL import Image

from cellseek.cli.main import main


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "cell.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    return path


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def garbage_server():
    """A TCP server that answers every connection with bytes that are not Dask's protocol."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            try:
                conn.sendall(b"\xff" * 64)
                conn.recv(1)
            except OSError:
                pass
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("command", ["embed", "suggest"])
def test_a_bad_scheduler_address_is_one_line_and_nothing_is_created(tmp_path, capsys, picture,
                                                                   garbage_server, command):
    store = tmp_path / "ref.cellseek"
    for address, expected in (("bogus", "not a Dask scheduler address"),
                              (f"127.0.0.1:{_free_port()}", "cannot reach the Dask scheduler"),
                              (garbage_server, "answered, but not as a Dask scheduler")):
        assert main([command, str(picture), "--store", str(store), "--scheduler", address,
                     "-q"]) == 1
        assert expected in _one_line(capsys)
        assert not store.exists()


def test_demo_into_an_existing_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "demo.txt"
    target.write_text("mine")
    assert main(["demo", "-o", str(target), "-q"]) == 1
    assert "a file exists here" in _one_line(capsys)
    assert target.read_text() == "mine"


def test_a_complex_tiff_is_refused_not_silently_made_real(tmp_path, capsys):
    import tifffile

    from cellseek.errors import ImageReadError
    from cellseek.io import read_image

    path = tmp_path / "field.tif"
    tifffile.imwrite(path, (np.ones((32, 32)) * (1 + 2j)).astype(np.complex64))
    with pytest.raises(ImageReadError, match="complex numbers"):
        read_image(path)
    assert main(["segment", str(path), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert "complex numbers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # a failed segment leaves no empty folder


@pytest.mark.parametrize("models", [",", " , ,", ""])
def test_a_models_option_that_names_no_model_is_refused(tmp_path, capsys, picture, models):
    store = tmp_path / "ref.cellseek"
    assert main(["embed", str(picture), "--store", str(store), "--models", models, "-q"]) == 1
    assert "names no model" in _one_line(capsys)
    assert not store.exists()


def test_models_check_with_a_file_as_weights_folder_is_refused(tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"not a folder")
    assert main(["models", "check", "--weights-dir", str(weights)]) == 1
    assert "this is a file, not a folder" in _one_line(capsys)
    assert main(["models", "list", "--weights-dir", str(tmp_path / "missing")]) == 1
    assert "no such folder" in _one_line(capsys)


def test_a_long_file_name_is_segmented_under_a_shortened_output_name(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    name = "c" * 250 + ".png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)).save(
        folder / name)
    out = tmp_path / "out"
    code = main(["segment", str(folder / name), "-o", str(out), "-q", "--method", "classical"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert code == 0, captured.err
    assert [p.name for p in out.glob("*.tif")] == ["c" * 200 + "_labels.tif"]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_store_that_is_a_pipe_or_a_device_says_so(tmp_path, capsys, kind):
    import os

    path = tmp_path / "pipe.cellseek"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    assert main(["check", str(path)]) == 1
    err = _one_line(capsys)
    assert "not a regular file" in err and "does not exist" not in err


def test_the_plane_limit_is_shown_in_pixels_below_a_megapixel(tmp_path, monkeypatch):
    from cellseek.errors import ImageReadError
    from cellseek.io import read_image

    monkeypatch.setenv("CELLSEEK_MAX_PLANE_PIXELS", " 100 ")
    path = tmp_path / "cell.png"
    Image.fromarray(np.zeros((20, 20), np.uint8) + 5).save(path)
    with pytest.raises(ImageReadError, match=r"\(400 pixels\) is larger than the limit of 100 "
                                             r"pixels"):
        read_image(path)


def test_an_exhausted_id_counter_is_not_called_a_full_disk(tmp_path):
    from cellseek.errors import StoreError
    from cellseek.store import ReferenceStore

    with ReferenceStore.create(tmp_path / "ref.cellseek", {"m": 2}) as store:
        store.add_image("a.tif", "hash-a")
        store._conn.execute("UPDATE sqlite_sequence SET seq = 9223372036854775807 "
                            "WHERE name = 'images'")
        with pytest.raises(StoreError, match="id counter of table 'images' is at its maximum") \
                as info:
            store.add_image("b.tif", "hash-b")
        assert "disk is full" not in str(info.value)
        assert len(store.images()) == 1
