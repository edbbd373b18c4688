"""``python -m mlp.cli.synthetic``: it writes a dataset ``load_dataset`` reads, and bad input
is one line."""

from __future__ import annotations

import pytest

from mlp.data import (
    load_dataset,
)


def test_synthetic_command_writes_a_dataset_and_help_writes_nothing(tmp_path, monkeypatch, capsys):
    from mlp.cli.synthetic import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and list(tmp_path.iterdir()) == []
    main([str(tmp_path / "data"), "120", "30"])
    data = load_dataset("fashion-mnist", tmp_path / "data")
    assert data.X_train.shape == (120, 784) and data.X_test.shape == (30, 784)
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path / "more"), "0", "5"])
    assert exc.value.code == 2 and not (tmp_path / "more").exists()


@pytest.mark.parametrize(
    ("folder", "counts", "status", "says"),
    [
        ("", ["5", "5"], 2, "expected a path, got ''"),
        ("afile", ["5", "5"], 1, "it is a file, not a folder"),
        ("afile/sub", ["5", "5"], 1, "Not a directory"),
        ("data", ["99999999999999999999"], 2, "N_TRAIN must be at most 4294967295"),
        ("data", ["5", "-1"], 2, "argument n_test"),
    ],
)
def test_synthetic_bad_input_is_one_line(
    tmp_path, monkeypatch, capsys, folder, counts, status, says
):
    from mlp.cli import synthetic

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("kept\n")
    try:
        code = synthetic.main([folder, *counts])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == status and says in err, err
    assert err.startswith("python -m mlp.cli.synthetic: error: ") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # nothing written here
    assert (tmp_path / "afile").read_text() == "kept\n"


def test_synthetic_unwritable_folder_is_one_line(tmp_path, monkeypatch, capsys):
    """As root a chmod stops nothing, so the file system's refusal is simulated."""
    import mlp.data.synthetic
    from mlp.cli import synthetic

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(mlp.data.synthetic, "write_idx", refuse)
    assert synthetic.main([str(tmp_path / "data"), "5", "5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("python -m mlp.cli.synthetic: error: cannot write the dataset to ")
    assert err.rstrip().endswith("Permission denied") and err.count("\n") == 1


@pytest.mark.parametrize("existing", ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte"])
def test_synthetic_refuses_a_folder_holding_a_dataset(tmp_path, capsys, existing):
    """Plain synthetic files beside a real dataset's .gz files would be read in their place
    (the plain name is looked for first): such a folder is refused, and nothing is written."""
    from mlp.cli import synthetic

    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    (folder / existing).write_bytes(b"real data")
    assert synthetic.main([str(folder), "5", "5"]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"python -m mlp.cli.synthetic: error: {folder} already holds {existing}: write the "
        "synthetic dataset to a folder without one, or remove them first\n"
    )
    assert [p.name for p in folder.iterdir()] == [existing]
    assert (folder / existing).read_bytes() == b"real data"
