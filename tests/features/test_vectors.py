import numpy as np
import polars as pl
import pytest

from shopformer.features.content import ContentConfig, build_content
from shopformer.features.vectors import align_vectors, load_item_vectors
from shopformer.features.vocab import Vocabulary


def test_npz_and_parquet_give_the_same_vectors(tmp_path):
    ids, rows = ["a", "b", "c"], np.arange(6, dtype=np.float32).reshape(3, 2)
    np.savez(tmp_path / "v.npz", item_id=np.array(ids), vectors=rows)
    pl.DataFrame({"item_id": ids, "vector": rows.tolist()}).write_parquet(tmp_path / "v.parquet")
    for name in ("v.npz", "v.parquet"):
        got_ids, got = load_item_vectors(tmp_path / name)
        assert got_ids == ids and got.dtype == np.float32
        np.testing.assert_array_equal(got, rows)


def test_bad_files_name_the_row_or_the_field(tmp_path):
    np.savez(tmp_path / "nan.npz", item_id=np.array(["a", "b"]), vectors=np.array([[0.0, 1.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"row 2 \(item_id 'b'\): vector holds NaN"):
        load_item_vectors(tmp_path / "nan.npz")
    np.savez(tmp_path / "keys.npz", ids=np.array(["a"]), vectors=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="missing item_id"):
        load_item_vectors(tmp_path / "keys.npz")
    np.savez(tmp_path / "shape.npz", item_id=np.array(["a", "b"]), vectors=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(2, V\)"):
        load_item_vectors(tmp_path / "shape.npz")
    pl.DataFrame({"item_id": ["a", "b"], "vector": [[1.0, 2.0], [1.0]]}).write_parquet(tmp_path / "ragged.parquet")
    with pytest.raises(ValueError, match=r"row 2 \(item_id 'b'\): every vector needs the same length \(2\), got 1"):
        load_item_vectors(tmp_path / "ragged.parquet")
    pl.DataFrame({"item_id": ["a"], "emb": [[1.0]]}).write_parquet(tmp_path / "col.parquet")
    with pytest.raises(ValueError, match="missing vector"):
        load_item_vectors(tmp_path / "col.parquet")
    (tmp_path / "v.csv").write_text("item_id\n")
    with pytest.raises(ValueError, match="use .npz or .parquet"):
        load_item_vectors(tmp_path / "v.csv")
    with pytest.raises(FileNotFoundError):
        load_item_vectors(tmp_path / "none.npz")


def test_products_without_a_vector_get_zeros_and_new_products_are_padded():
    aligned, found = align_vectors(["x", "a", "b"], ["a", "b", "zz"], np.array([[1.0], [2.0], [3.0]], np.float32))
    assert found == 2 and aligned.tolist() == [[0.0], [1.0], [2.0]]
    # text (2 wide) + image (1 wide): a new product's text vector is padded with a zero image block
    products = pl.DataFrame({"item_id": ["a", "b"]})
    content = build_content(products, Vocabulary(["a", "b"]), ContentConfig(fields=(), image_dim=1),
                            np.array([[1.0, 0.0, 5.0], [0.0, 1.0, 6.0]], np.float32))
    _, rows = content.rows_for(pl.DataFrame({"item_id": ["new"]}), np.array([[0.5, 0.5]], np.float32))
    assert rows.tolist() == [[0.5, 0.5, 0.0]]
