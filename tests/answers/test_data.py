import gzip
import json
import numpy as np
import pytest

from shopformer.answers import QAFormatError, SplitConfig, frame_from_records, load_qa, temporal_split

from tests.conftest import SHARED_DATA

REAL = SHARED_DATA / "amazon-qa"


def test_reads_json_lines_and_python_literals_gzip_or_not(tmp_path):
    recs = [{"asin": "A1", "question": "Is it loud?", "answer": "No.", "questionType": "yes/no", "answerType": "N",
             "answerTime": "Jun 27, 2014", "unixTime": 1403852400},
            {"asin": "A1", "question": "Size?", "answer": "24 in", "questionType": "open-ended",
             "answerTime": "Jul 13, 2013"}]
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    with gzip.open(tmp_path / "qa.json.gz", "wt") as fh:
        fh.write("\n".join(repr(r) for r in recs) + "\n")  # the original release: Python literals
    a, _ = load_qa(tmp_path / "qa.jsonl")
    b, _ = load_qa(tmp_path / "qa.json.gz")
    assert a.equals(b)
    assert a["qa_id"].to_list() == [0, 1]
    assert a["answer_type"].to_list() == ["N", None]
    assert a["question_type"].to_list() == ["yes/no", "open-ended"]
    when = a["answered_at"].to_list()
    assert when[0].year == 2014 and when[1].isoformat().startswith("2013-07-13")  # no unixTime: answerTime read


def test_drops_are_counted_by_reason_and_bad_lines_named(tmp_path):
    frame, dropped = frame_from_records([{"asin": "A", "question": "q", "answer": ""}, {"question": "q", "answer": "a"},
                                         {"asin": "A", "question": "q", "answer": "a"}])
    assert frame.height == 1 and dropped == {"empty question or answer": 1, "no asin": 1}
    (tmp_path / "bad.jsonl").write_text('{"asin": "A", "question": "q", "answer": "a"}\n{oops\n')
    with pytest.raises(QAFormatError, match="bad.jsonl:2"):
        load_qa(tmp_path / "bad.jsonl")
    with pytest.raises(FileNotFoundError):
        load_qa(tmp_path / "none.jsonl")


def test_temporal_split_holds_out_the_latest_questions():
    recs = [{"asin": "A", "question": f"q{i}", "answer": f"a{i}", "unixTime": 1_400_000_000 + i * 86400}
            for i in range(20)]
    frame, _ = frame_from_records(recs)
    split = temporal_split(frame, SplitConfig(valid_frac=0.2, test_frac=0.25))
    assert list(split) == ["train"] * 11 + ["valid"] * 4 + ["test"] * 5
    with pytest.raises(ValueError):
        SplitConfig(valid_frac=0.6, test_frac=0.5)


@pytest.mark.skipif(not (REAL / "qa_Appliances.jsonl.gz").exists(), reason="../shared/data/amazon-qa is absent")
def test_real_slice_reads_the_same_from_both_files():
    a, da = load_qa(REAL / "qa_Appliances.jsonl.gz", limit=300)
    b, db = load_qa(REAL / "qa_Appliances.json.gz", limit=300)
    assert a.equals(b) and a.height == 300 and not da and not db
    assert set(a["question_type"].unique()) <= {"yes/no", "open-ended"}
    assert a["answered_at"].null_count() == 0
    assert np.all(a["item_id"].str.len_chars().to_numpy() == 10)  # ASINs


def test_relative_dates_come_after_every_dated_answer_in_their_order():
    frame, _ = frame_from_records([
        {"asin": "A", "question": "q0", "answer": "a0", "answerTime": "3 days ago"},
        {"asin": "A", "question": "q1", "answer": "a1", "answerTime": "May 1, 2015", "unixTime": 1430463600},
        {"asin": "A", "question": "q2", "answer": "a2", "answerTime": "20 days ago"},
        {"asin": "A", "question": "q3", "answer": "a3", "answerTime": "no idea"}])
    when = frame["answered_at"].to_list()
    assert when[1] < when[2] < when[0] and when[3] is None
    assert (when[0] - when[2]).days == 17
