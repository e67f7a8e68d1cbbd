"""The notebook loader: our summaries into arrays and a DataFrame, without TensorBoard running."""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tb_matmul_explainer import loader, metadata, ops, summary


def test_load_and_dataframe_match_what_was_written(tmp_path):
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=(10, 4)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32)
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        for step in (0, 7):
            summary.dense(
                "second/forward", x, kernel, step=step, layer="second", layer_index=1, threshold_method="exact"
            )
        summary.dense("first/forward", x, kernel, step=0, layer="first", layer_index=0, threshold_method="exact")
    result = loader.load(str(tmp_path))
    assert list(result.runs["run"]) == [("first", "forward"), ("second", "forward")]  # model order
    series = result.runs["run"][("second", "forward")]
    assert series.steps == [0, 7] and series.info.units == 3
    counts, sums = ops.matmul_classify(x, kernel)
    np.testing.assert_array_equal(series.layer_totals("counts")[1], np.sum(counts, axis=(0, 1)))
    assert series.record_at(5)[0] == 0 and series.record_at(None)[0] == 7 and series.record_at(-1) is None

    frame = loader.to_dataframe(result)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3 * 9
    pp = frame[(frame.layer == "second") & (frame.step == 7) & (frame.pair == "PP")]
    assert float(pp["count"].iloc[0]) == float(np.sum(counts[..., 0]))
    assert float(frame[(frame.layer == "first")]["sum"].sum()) == pytest.approx(float(np.sum(x @ kernel)), rel=1e-5)


def test_unreadable_tags_are_listed_not_dropped(tmp_path):
    md = metadata.create_summary_metadata(
        "d", None, role="forward", op="dense", layer="d", index=0, units=2, confidence=0.9
    )
    md.plugin_data.content = md.plugin_data.content.replace(b'"v":%d' % metadata.CONTRACT_VERSION, b'"v":7')
    with tf.summary.create_file_writer(str(tmp_path / "run")).as_default():
        tf.summary.write("d/forward", tf.zeros([3, metadata.COLUMNS], tf.float64), 0, metadata=md)
    result = loader.load(str(tmp_path))
    assert result.runs == {} and result.unreadable[0][:2] == ("run", "d/forward")
    assert "contract version 7" in result.unreadable[0][2]


def test_missing_or_empty_logdir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        loader.load(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no matmul-explainer summaries"):
        loader.load(str(tmp_path))
