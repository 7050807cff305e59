import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from _shared import shared_data
from cellseek.cli.main import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_every_command_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"segment", "embed", "suggest", "evaluate", "export", "models", "bench", "demo"} <= set(
        sub.choices
    )
    for name in sub.choices:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: cellseek " + name in capsys.readouterr().out


def test_cli_docs_are_current():
    spec = importlib.util.spec_from_file_location("gen", REPO / "scripts" / "gen_cli_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert (REPO / "docs" / "cli.md").read_text() == gen.render(), (
        "docs/cli.md is stale: run python scripts/gen_cli_docs.py"
    )


def test_missing_image_gives_one_line_error(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "nope.tif")]) == 1
    err = capsys.readouterr().err
    assert "nope.tif" in err and "Traceback" not in err


def _fields(folder, seeds=(0, 1, 2)):
    from PIL import Image

    from _shared import synthetic_field

    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        Image.fromarray(synthetic_field(seed)[0]).save(folder / f"f{seed}.png")
    return folder


def test_segment_writes_every_image_of_a_folder_outside_it(tmp_path, capsys):
    from cellseek.io import read_labels

    fields = _fields(tmp_path / "fields")
    out = tmp_path / "labels"
    assert main(["segment", str(fields), "--method", "classical", "-q", "-o", str(out)]) == 0
    assert "3 images: 3 done, 0 failed" in capsys.readouterr().out
    written = sorted(p.name for p in out.glob("*.tif"))
    assert written == ["f0_labels.tif", "f1_labels.tif", "f2_labels.tif"]
    assert read_labels(out / "f0_labels.tif").max() >= 4
    assert sorted(p.name for p in fields.iterdir()) == ["f0.png", "f1.png", "f2.png"]
    # never into the input folder
    assert main(["segment", str(fields), "-q", "-o", str(fields / "sub")]) == 1
    assert "inside the input folder" in capsys.readouterr().err
    # nor into (or above) the folder of an image given as a file or a glob
    for spec, target in ((fields / "f0.png", fields), (str(fields / "*.png"), fields),
                         (fields / "f1.png", tmp_path)):
        assert main(["segment", str(spec), "-q", "-o", str(target)]) == 1
        assert "holds the input image" in capsys.readouterr().err
    assert sorted(p.name for p in fields.iterdir()) == ["f0.png", "f1.png", "f2.png"]
    # a later embed of a folder that holds the label folder does not take them for images
    (tmp_path / "all").mkdir()
    out.rename(tmp_path / "all" / "labels")
    fields.rename(tmp_path / "all" / "fields")
    store = tmp_path / "s.cellseek"
    assert main(["embed", str(tmp_path / "all"), "--store", str(store), "--method",
                 "classical", "-q"]) == 0
    assert "3 images: 3 done, 0 failed" in capsys.readouterr().out


def test_embed_and_suggest_take_every_image_of_a_folder_or_glob(tmp_path, capsys):
    from cellseek.store import ReferenceStore

    fields = _fields(tmp_path / "fields", seeds=(0, 1, 2, 3))
    store = tmp_path / "s.cellseek"
    assert main(["embed", str(fields), "--store", str(store), "--method", "classical",
                 "-q"]) == 0
    assert "4 images: 4 done, 0 failed" in capsys.readouterr().out
    with ReferenceStore.open(store) as s:
        assert len(s.images()) == 4
        first = s.cells()[0]["id"]
        s.set_labels([first], ["red"])
    # again with a glob: every image is already there
    assert main(["embed", str(fields / "f*.png"), "--store", str(store), "-q"]) == 0
    assert "4 images: 0 done, 4 skipped (already in the store), 0 failed" in \
        capsys.readouterr().out
    _fields(tmp_path / "more", seeds=(4, 5))
    assert main(["suggest", str(tmp_path / "more"), "--store", str(store), "-q"]) == 0
    out = capsys.readouterr().out
    assert "2 images: 2 done, 0 failed" in out
    with ReferenceStore.open(store) as s:
        assert len(s.images()) == 6


def test_a_failed_embed_leaves_no_new_store_and_model_sets_are_checked(tmp_path, capsys):
    fields = _fields(tmp_path / "fields", seeds=(0,))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png at all")
    store = tmp_path / "new.cellseek"
    assert main(["embed", str(bad), "--store", str(store), "-q"]) == 1
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err and "was not kept" in err
    assert not store.exists()
    assert main(["embed", str(fields), "--store", str(store), "--method", "classical",
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["embed", str(fields), "--store", str(store), "--preset", "paper", "-q"]) == 1
    err = capsys.readouterr().err
    assert "holds the models classical" in err and "Traceback" not in err
    # the same through the batch path (workers)
    assert main(["embed", str(fields), "--store", str(store), "--preset", "paper",
                 "--scheduler", "sync", "-q"]) == 1
    err = capsys.readouterr().err
    assert "holds the models classical" in err and "Traceback" not in err
    other = tmp_path / "other.cellseek"
    assert main(["embed", str(bad), "--store", str(other), "--scheduler", "sync", "-q"]) == 1
    capsys.readouterr()
    assert not other.exists()
    assert not (tmp_path / "other.cellseek.shards").exists()


@pytest.mark.parametrize("argv, message", [
    (["suggest", "--store", "s", "--threshold", "2"], "between 0 and 1"),
    (["suggest", "--store", "s", "--pca", "-3"], "at least 0"),
    (["embed", "x", "--store", "s", "--min-area", "-5"], "at least 0"),
    (["embed", "x", "--store", "s", "--workers", "-2"], "at least 1"),
    (["evaluate", "--reference", "r.csv", "--folds", "1"], "at least 2"),
    (["bench", "--sizes", "10,-1"], "at least 1"),
    (["embed", "x", "--store", "s", "--device", "banana"], "not a device"),
])
def test_option_values_out_of_range_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_reference_evaluate_and_suggest_on_real_crops(tmp_path, capsys):
    pbc = shared_data("pbc_subset", "labels.csv")
    rows = pbc.read_text().splitlines()
    header, body = rows[0], rows[1:]
    keep = [r for r in body if r.split(",")[1] in ("lymphocyte", "eosinophil")]
    rng = np.random.default_rng(0)
    picked = [keep[i] for i in rng.choice(len(keep), 40, replace=False)]
    csv = tmp_path / "small.csv"
    csv.write_text("\n".join([header] + [str(pbc.parent / r.split(",")[0]) + "," +
                                         ",".join(r.split(",")[1:]) for r in picked]) + "\n")
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--reference", str(csv), "--folds", "2", "--json", str(out),
                 "-q"]) == 0
    result = json.loads(out.read_text())
    assert set(result["per_class_recall"]) == {"lymphocyte", "eosinophil"}
    assert result["macro_accuracy"] > 0.7  # two very different classes
    store = tmp_path / "ref.cellseek"
    assert main(["reference", str(csv), "--store", str(store), "-q"]) == 0
    assert "added 40 confirmed cells" in capsys.readouterr().out


def _bundled_rows(tmp_path, name, per_class):
    """A CSV of bundled labelled crops: ``per_class`` class -> rows, with absolute paths."""
    from cellseek.data import sample_reference_csv

    csv = sample_reference_csv()
    header, *body = csv.read_text().splitlines()
    rows = [r for c, n in per_class.items() for r in [b for b in body
                                                       if b.split(",")[1] == c][:n]]
    out = tmp_path / name
    out.write_text("\n".join([header] + [f"{csv.parent / r.split(',')[0]},"
                                         + ",".join(r.split(",")[1:]) for r in rows]) + "\n")
    return out


def test_reference_of_one_row_says_one_cell(tmp_path, capsys):
    """'added 1 confirmed cell', not 'added 1 confirmed cells'."""
    one = _bundled_rows(tmp_path, "one_row.csv", {"basophil": 1})
    store = tmp_path / "s.cellseek"
    assert main(["reference", str(one), "--store", str(store), "-q"]) == 0
    out = capsys.readouterr().out
    assert f"{store}: added 1 confirmed cell (0 confirmed before, 1 now)" in out


def test_evaluate_with_fewer_cells_per_class_than_folds_is_one_line(tmp_path, capsys):
    """3 basophils and 3 eosinophils in the default 5 folds: was a TypeError traceback."""
    small = _bundled_rows(tmp_path, "small.csv", {"basophil": 3, "eosinophil": 3})
    assert main(["evaluate", "--reference", str(small), "-q", "--no-ablations"]) == 1
    err = capsys.readouterr().err
    assert err == (f"cellseek: error: {small}: 5 folds would leave folds without cells: every "
                   "class has 3 cells; use --folds 3 or fewer\n")
    assert main(["evaluate", "--reference", str(small), "-q", "--no-ablations", "--folds",
                 "3"]) == 0
    assert "cross-validation" in capsys.readouterr().out


def test_embed_merge_export_roundtrip(tmp_path, capsys):
    from PIL import Image

    from _shared import synthetic_field

    for seed in (0, 1):
        Image.fromarray(synthetic_field(seed)[0]).save(tmp_path / f"f{seed}.png")
    a, b = tmp_path / "a.cellseek", tmp_path / "b.cellseek"
    assert main(["embed", str(tmp_path / "f0.png"), "--store", str(a), "--method",
                 "classical", "-q"]) == 0
    assert main(["embed", str(tmp_path / "f1.png"), "--store", str(b), "--method",
                 "classical", "-q"]) == 0
    assert main(["merge", str(b), "--store", str(a)]) == 0
    assert "images added 1" in capsys.readouterr().out
    assert main(["export", "--store", str(a), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "cells.csv").exists()
    assert sorted(p.name for p in (tmp_path / "out").glob("*_labels.tif")) == [
        "f0_t0_z0_labels.tif", "f1_t0_z0_labels.tif"]


def test_embed_and_suggest_through_the_batch_runner(tmp_path, capsys):
    from cellseek.data import sample_fields
    from cellseek.store import ReferenceStore

    store = tmp_path / "batch.cellseek"
    fields = [str(p) for p in sample_fields()[:2]]
    assert main(["embed", *fields, "--store", str(store), "--scheduler", "sync", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "results" not in summary
    with ReferenceStore.open(store) as s:
        assert len(s.images()) == 2 and s.n_cells() >= 2
    # suggestions with a reference: label one cell, then suggest through the runner
    with ReferenceStore.open(store) as s:
        first = s.cells()[0]["id"]
        s.set_labels([first], ["neutrophil"])
    out_csv = tmp_path / "cells.csv"
    assert main(["suggest", *fields, "--store", str(store), "--scheduler", "sync",
                 "-o", str(out_csv), "-q"]) == 0
    assert out_csv.exists() and out_csv.read_text().count("\n") >= 2


def test_suggest_pca_option_reaches_the_index_config():
    from cellseek.cli.main import build_parser
    from cellseek.cli.options import config_from_args as _config

    args = build_parser().parse_args(["suggest", "--store", "s.cellseek", "--pca", "32"])
    assert _config(args).index.pca_components == 32
    args = build_parser().parse_args(["suggest", "--store", "s.cellseek", "--pca", "0"])
    assert _config(args).index.pca_components == 0  # off
    args = build_parser().parse_args(["suggest", "--store", "s.cellseek"])
    assert _config(args).index.pca_components == 0  # the default: the full embeddings


@pytest.mark.parametrize("which", [["--merge", "--cells", "300"],
                                   ["--index", "--sizes", "300", "--dim", "16",
                                    "--queries", "20"]])
def test_bench_writes_json_for_every_benchmark(tmp_path, capsys, which):
    out = tmp_path / "bench.json"
    assert main(["bench", "-q", *which, "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result, "an empty benchmark result"
    assert f"JSON -> {out}" in capsys.readouterr().out


def test_segment_output_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    fields = _fields(tmp_path / "fields", seeds=(0, 1))
    out = tmp_path / "labels"
    (out / "f0_labels.tif").mkdir(parents=True)  # a folder where a label image should go
    assert main(["segment", str(fields), "--method", "classical", "-q", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "f0_labels.tif: cannot write the label image" in err and "Traceback" not in err
    assert (out / "f1_labels.tif").is_file()  # the other image was still written

    import errno

    import tifffile

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full)
    full_out = tmp_path / "full"
    assert main(["segment", str(fields), "--method", "classical", "-q", "-o",
                 str(full_out)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert not [p for p in full_out.iterdir() if p.name.endswith(".tmp")]  # no debris


# ------------------------------------------------------------------ issue 22 item 11: polish


def _help(*command: str) -> str:
    import argparse

    from cellseek.cli.main import build_parser

    parser = build_parser()
    for name in command:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return " ".join(parser.format_help().split())


def test_index_and_models_actions_each_have_help():
    index = _help("index")
    assert "status whether the store holds a saved index" in index
    assert "build build the index from the confirmed cells" in index
    assert "drop delete the saved index" in index
    models = _help("models")
    assert "list the zoo" in models and "pull download the weights" in models
    assert "check load models whose weights are present" in models


def test_defaults_are_shown_in_the_help():
    assert "(default 0.6, or the store's saved setting)" in _help("suggest")
    assert "(default 150)" in _help("segment") and "(default 150)" in _help("embed")
    assert "(default ./cellseek-demo)" in _help("demo")


def test_check_takes_the_store_as_positional_or_with_store(tmp_path, capsys):
    from cellseek.store import ReferenceStore

    path = tmp_path / "ref.cellseek"
    ReferenceStore.create(path, {"m": 2}).close()
    assert main(["check", str(path)]) == 0
    assert main(["check", "--store", str(path)]) == 0
    assert capsys.readouterr().out.count("intact") == 2
    assert main(["check"]) == 1
    err = capsys.readouterr().err.strip()
    assert "cellseek check --store STORE" in err and len(err.splitlines()) == 1


def test_reference_and_merge_print_classes_as_a_readable_list(tmp_path, capsys):
    from cellseek.data import sample_reference_csv

    store = tmp_path / "ref.cellseek"
    assert main(["reference", str(sample_reference_csv()), "--store", str(store), "-q"]) == 0
    out = capsys.readouterr().out
    classes = out.split("classes: ", 1)[1].strip()
    assert "{" not in classes and "'" not in classes
    assert classes.startswith("basophil 6, ")


def test_suggest_read_only_leaves_the_store_exactly_as_it_is(tmp_path, capsys):
    """Issue 24 item 8: a command that only reads can be told so (--read-only)."""
    import csv
    import hashlib

    from cellseek.data import sample_fields, sample_reference_csv
    from cellseek.store import ReferenceStore

    store = tmp_path / "ref.cellseek"
    assert main(["reference", str(sample_reference_csv()), "--store", str(store), "-q"]) == 0
    assert main(["embed", str(sample_fields()[0]), "--store", str(store), "-q"]) == 0
    before = (hashlib.sha256(store.read_bytes()).hexdigest(), store.stat().st_mtime_ns)
    out = tmp_path / "cells.csv"
    assert main(["suggest", "--store", str(store), "--read-only", "-o", str(out), "-q"]) == 0
    assert "nothing was saved" in capsys.readouterr().out
    assert (hashlib.sha256(store.read_bytes()).hexdigest(), store.stat().st_mtime_ns) == before
    with open(out, newline="") as fh:
        states = {r["state"] for r in csv.DictReader(fh)}
    assert states & {"suggested", "uncertain"} and "unlabelled" not in states
    with ReferenceStore.open(store, readonly=True) as s:
        assert all(c["suggestion"] is None and c["confidence"] is None
                   for c in s.cells(labelled=False))
    assert main(["suggest", str(sample_fields()[1]), "--store", str(store), "--read-only"]) == 1
    assert "--read-only adds no images" in capsys.readouterr().err
