"""Loaders of the upstream formats, quarantine, clear errors on garbage, and decontamination."""

from __future__ import annotations

import json
import logging
import random

import pyarrow as pa
import pytest
from data_fixtures import openr1_row, write_amc, write_json_list, write_jsonl, write_openr1

from igpo.data.config import (
    DecontaminationConfig,
    EvalSetConfig,
    IngestConfig,
    MetaMathQAConfig,
    OpenR1Config,
)
from igpo.data.ingest import (
    NgramIndex,
    NoValidRowsError,
    decontaminate,
    ingest,
    load_source,
    word_ngrams,
    write_ingest_result,
)
from igpo.data.schema import (
    CANONICAL_SCHEMA,
    QUARANTINE_SCHEMA,
    DataFileError,
    metadata_of,
    read_table,
    rows_to_table,
)
from igpo.verify import is_correct

GSM_Q = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"

METAMATH_ROWS = [
    {"query": "What is 2 + 3?", "response": "2 + 3 = 5.\nThe answer is: 5", "type": "GSM_AnsAug", "original_question": "2+3?"},
    {"query": "Compute $\\frac{6}{2}$.", "response": "We have $\\frac{6}{2} = \\boxed{3}$.The answer is: 3",
     "type": "MATH_AnsAug", "original_question": "6/2"},
    {"query": "What is 2 + 3?", "response": "Duplicate query.\nThe answer is: 5", "type": "GSM_AnsAug", "original_question": ""},
    {"query": "If x + 1 = 3, what is x?", "response": "x = 2.\nThe answer is: 2", "type": "GSM_Rephrased", "original_question": ""},
    {"query": "No marker here", "response": "It is 4.", "type": "GSM_AnsAug", "original_question": ""},
    {"query": "Empty answer", "response": "So.\nThe answer is:   ", "type": "MATH_AnsAug", "original_question": ""},
    {"query": 17, "response": "x\nThe answer is: 1", "type": "GSM_AnsAug", "original_question": ""},
    {"response": "x\nThe answer is: 1", "type": "GSM_AnsAug", "original_question": ""},
    {"query": GSM_Q.upper().replace(",", " ,"), "response": "48 + 24 = 72\nThe answer is: 72", "type": "GSM_AnsAug",
     "original_question": ""},
    "not an object",
]

GSM_ROWS = [
    {"question": GSM_Q, "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"},
    {"question": "A farm has 1,000 cows and buys 234 more. How many cows?", "answer": "1000 + 234 = 1234\n#### 1,234"},
    {"question": "Missing marker?", "answer": "It is 5."},
    {"question": "Not a number?", "answer": "so\n#### five"},
    {"question": "", "answer": "#### 1"},
]

MATH500_ROWS = [
    {"problem": "Compute $\\dbinom{8}{4}$.", "solution": "$\\dbinom{8}{4} = \\boxed{70}$.", "answer": "70",
     "subject": "Counting & Probability", "level": 2, "unique_id": "test/counting_and_probability/1.json"},
    {"problem": "Find $x$ if $2x = 1$.", "solution": "$x = \\boxed{\\frac{1}{2}}$", "answer": "\\frac{1}{2}",
     "subject": "Algebra", "level": 1, "unique_id": "test/algebra/2.json"},
    {"problem": "Broken answer type.", "solution": "", "answer": ["7"], "subject": "Algebra", "level": 1, "unique_id": "test/algebra/3.json"},
]


def _openr1_rows() -> list[dict]:
    return [
        # gen 0 wrong, gen 1 right but cut off, gen 2 right and complete -> gen 2.
        openr1_row("u-1", "Find the sum of 2 and 2.", "4",
                   ["<think>2+2=5</think> \\boxed{5}", "<think>2+2 is", "<think>2+2=4</think> So \\boxed{4}"],
                   [False, True, True], [True, False, True]),
        # nothing verified -> falls back to the solution.
        openr1_row("u-2", "Find 3 times 3.", "9", ["\\boxed{8}"], [False], [True], solution="$3\\cdot 3 = \\boxed{9}$"),
        # flags and generations disagree in length -> quarantine.
        openr1_row("u-3", "Find 1+1.", "2", ["\\boxed{2}", "\\boxed{2}"], [True], [True, True]),
        # a proof problem -> not checkable.
        openr1_row("u-4", "Prove that 1 < 2.", "proof", ["trivial"], [True], [True]),
        # empty problem -> quarantine.
        openr1_row("u-5", "  ", "1", ["\\boxed{1}"], [True], [True]),
    ]


def test_metamath_keeps_types_dedups_and_quarantines(tmp_path):
    path = write_json_list(tmp_path / "MetaMathQA-395K.json", METAMATH_ROWS)
    loaded = load_source("metamath", MetaMathQAConfig(path=str(path)))
    rows = loaded.table.to_pylist()
    assert [r["question"] for r in rows] == ["What is 2 + 3?", "Compute $\\frac{6}{2}$.", METAMATH_ROWS[8]["query"]]
    assert [r["answer"] for r in rows] == ["5", "3", "72"]
    assert rows[0]["reasoning"] == METAMATH_ROWS[0]["response"]  # y* is the whole response
    assert all(is_correct(r["reasoning"], r["answer"]) for r in rows)
    assert {r["split"] for r in rows} == {"train"} and metadata_of(loaded.table)[1]["type"] == "MATH_AnsAug"
    reasons = {q["row"]: q["reason"] for q in loaded.quarantine}
    assert reasons == {
        "4": "response has no 'The answer is:'",
        "5": "nothing after 'The answer is:' in the response",
        "6": "field 'query' is int, expected str",
        "7": "missing field 'query'",
        "9": "row is a JSON str, expected an object",
    }
    assert json.loads(loaded.quarantine[2]["raw"])["query"] == 17  # the raw row is kept for inspection
    c = loaded.counts
    assert (c.rows_read, c.valid, c.quarantined, c.filtered, c.duplicates) == (10, 3, 5, 1, 1)
    assert c.rows_read == c.valid + c.quarantined + c.filtered + c.duplicates


def test_metamath_types_are_configurable_and_max_rows_caps(tmp_path):
    path = write_json_list(tmp_path / "mm.json", METAMATH_ROWS)
    only = load_source("metamath", MetaMathQAConfig(path=str(path), types=("GSM_Rephrased",)))
    assert only.table.column("answer").to_pylist() == ["2"]
    capped = load_source("metamath", MetaMathQAConfig(path=str(path), max_rows=1))
    assert capped.table.num_rows == 1 and capped.counts.rows_read == 1


def test_openr1_picks_first_verified_complete_generation(tmp_path):
    path = write_openr1(tmp_path / "train-00000-of-00001.parquet", _openr1_rows())
    loaded = load_source("openr1", OpenR1Config(path=str(path)))
    rows = {r["id"]: r for r in loaded.table.to_pylist()}
    assert set(rows) == {"openr1-u-1", "openr1-u-2"}
    assert rows["openr1-u-1"]["reasoning"] == "<think>2+2=4</think> So \\boxed{4}"
    assert json.loads(rows["openr1-u-1"]["metadata"])["reasoning_from"] == "generations[2]"
    assert rows["openr1-u-2"]["reasoning"] == "$3\\cdot 3 = \\boxed{9}$"
    assert json.loads(rows["openr1-u-2"]["metadata"])["reasoning_from"] == "solution"
    reasons = sorted(q["reason"] for q in loaded.quarantine)
    assert reasons == [
        "answer 'proof' is not checkable (excluded_answers)",
        "empty field 'problem'",
        "field 'correctness_math_verify' has 1 items but generations has 2",
    ]


def test_openr1_fallback_quarantine_and_incomplete_allowed(tmp_path):
    path = write_openr1(tmp_path / "o.parquet", _openr1_rows())
    strict = load_source("openr1", OpenR1Config(path=str(path), reasoning_fallback="quarantine"))
    assert strict.table.column("id").to_pylist() == ["openr1-u-1"]
    assert "no generation verified correct and complete" in {q["reason"] for q in strict.quarantine}
    lax = load_source("openr1", OpenR1Config(path=str(path), require_complete=False))
    assert lax.table.to_pylist()[0]["reasoning"] == "<think>2+2 is"  # gen 1: verified, completeness not required


def test_openr1_reads_a_directory_of_shards(tmp_path):
    shards = tmp_path / "data"
    shards.mkdir()
    rows = _openr1_rows()
    write_openr1(shards / "train-00000-of-00002.parquet", rows[:2])
    write_openr1(shards / "train-00001-of-00002.parquet", rows[2:])
    loaded = load_source("openr1", OpenR1Config(path=str(shards)))
    assert loaded.counts.rows_read == 5 and loaded.table.num_rows == 2


def test_gsm8k_answers_after_hashes_without_commas(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", GSM_ROWS, extra_lines=('{"question": "truncated line', ))
    loaded = load_source("gsm8k", EvalSetConfig(path=str(path)))
    rows = loaded.table.to_pylist()
    assert [r["answer"] for r in rows] == ["72", "1234"]
    assert rows[0]["reasoning"].endswith("<<48+24=72>>72 clips.") and "####" not in rows[0]["reasoning"]
    assert {r["split"] for r in rows} == {"test"} and rows[1]["id"] == "gsm8k-1"
    reasons = [q["reason"] for q in loaded.quarantine]
    assert reasons == [
        "answer has no '#### N' line",
        "answer after '####' is not a number: 'five'",
        "empty field 'question'",
        "line 6 is not valid JSON (Unterminated string starting at)",
    ]


def test_math500_and_amc(tmp_path):
    math = load_source("math500", EvalSetConfig(path=str(write_jsonl(tmp_path / "math500.jsonl", MATH500_ROWS))))
    rows = math.table.to_pylist()
    assert [r["id"] for r in rows] == ["math500-test/counting_and_probability/1.json", "math500-test/algebra/2.json"]
    assert rows[1]["answer"] == "\\frac{1}{2}" and is_correct(rows[1]["reasoning"], rows[1]["answer"])
    assert metadata_of(math.table)[0] == {"level": 2, "subject": "Counting & Probability",
                                          "unique_id": "test/counting_and_probability/1.json"}
    assert [q["reason"] for q in math.quarantine] == ["field 'answer' is list, expected str or number"]

    amc_rows = [
        {"id": 0, "problem": "What is $1+1$?", "answer": 2.0, "url": "https://example.org/amc/0"},
        {"id": 1, "problem": "Half of three?", "answer": 1.5, "url": None},
        {"id": 2, "problem": "Lost answer", "answer": None, "url": None},
    ]
    amc = load_source("amc", EvalSetConfig(path=str(write_amc(tmp_path / "amc.parquet", amc_rows))))
    assert amc.table.column("answer").to_pylist() == ["2", "1.5"]
    assert amc.table.column("id").to_pylist() == ["amc-0", "amc-1"]
    assert metadata_of(amc.table)[0]["url"] == "https://example.org/amc/0"
    assert [q["reason"] for q in amc.quarantine] == ["missing field 'answer'"]
    # AMC also comes as JSONL with string answers and no id.
    amc2 = load_source("amc", EvalSetConfig(path=str(write_jsonl(tmp_path / "amc.jsonl", [{"problem": "p?", "answer": "(C) 5"}]))))
    assert amc2.table.to_pylist()[0]["id"] == "amc-0" and amc2.table.to_pylist()[0]["answer"] == "(C) 5"


def test_no_valid_row_names_source_and_first_reasons(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [{"question": "a?", "answer": "no marker"}, {"question": "", "answer": "#### 1"}])
    with pytest.raises(NoValidRowsError) as err:
        load_source("gsm8k", EvalSetConfig(path=str(path)))
    message = str(err.value)
    assert "source 'gsm8k'" in message and str(path) in message
    assert "row 0: answer has no '#### N' line; row 1: empty field 'question'" in message
    mm = write_json_list(tmp_path / "mm.json", [METAMATH_ROWS[3]])
    with pytest.raises(NoValidRowsError, match="no row has a type in \\['GSM_AnsAug', 'MATH_AnsAug'\\]"):
        load_source("metamath", MetaMathQAConfig(path=str(mm)))


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bin.parquet", b"PAR1\x00\x00garbage\x00", "bin.parquet: not a readable Parquet file"),
        ("bin.jsonl", bytes(range(256)) * 4, "bin.jsonl: not UTF-8 text"),
        ("nul.json", b'[{"query": "a\x00"}]', "nul.json: contains NUL bytes"),
        ("cut.json", b'[{"query": "a", "response": "The answer is: 1", "type": "GSM_AnsAug"}, {"query": "b", "resp',
         "cut.json: not valid JSON .*truncated download"),
        ("obj.json", b'{"query": "a"}', "obj.json: expected a JSON list of row objects, found a JSON dict"),
        ("text.jsonl", b"hello\nworld\n", "text.jsonl: no line is valid JSON"),
        ("other.json", json.dumps([{"problem": "p", "answer": "1"}]).encode(), "other.json: lacks column\\(s\\) \\['query', 'response', 'type'\\]"),
        ("data.csv", b"a,b\n1,2\n", "unsupported suffix '.csv'"),
    ],
)
def test_garbage_files_are_clear_errors_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=message):
        load_source("metamath", MetaMathQAConfig(path=str(path)))


def test_wrong_schema_parquet_and_missing_file(tmp_path):
    path = write_amc(tmp_path / "amc.parquet", [{"id": 1, "problem": "p", "answer": 1.0, "url": None}])
    with pytest.raises(DataFileError, match="amc.parquet: lacks column\\(s\\) \\['generations', 'correctness_math_verify', 'is_reasoning_complete'\\]"):
        load_source("openr1", OpenR1Config(path=str(path)))
    with pytest.raises(DataFileError, match="nope.jsonl: no such file"):
        # model_construct skips the config-time existence check, to exercise the loader's own.
        load_source("gsm8k", EvalSetConfig.model_construct(path=str(tmp_path / "nope.jsonl")))


def test_hub_ids_go_through_load_dataset(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, revision=None):
        calls.append((path, name, split, revision))
        return datasets.Dataset.from_list(GSM_ROWS[:2])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_source("gsm8k", EvalSetConfig(path="openai/gsm8k", hf_name="main", revision="abc"))
    assert calls == [("openai/gsm8k", "main", "test", "abc")]
    assert loaded.table.column("answer").to_pylist() == ["72", "1234"]


# ------------------------------------------------------------------------------- decontamination


def test_ngrams_normalise_case_punctuation_and_keep_operators():
    assert word_ngrams("What is 3+2?", 8) == {"what is 3 + 2"}  # shorter than n: one n-gram
    assert word_ngrams("WHAT, is  3 + 2", 2) == word_ngrams("what is 3+2?!", 2)
    assert word_ngrams("3 + 2", 3) != word_ngrams("3 - 2", 3)


def test_decontaminate_removes_overlaps_and_reports_them():
    eval_table = rows_to_table([
        {"id": "gsm8k-0", "source": "gsm8k", "split": "test", "question": GSM_Q, "reasoning": "", "answer": "72", "metadata": "{}"},
    ])
    train_rows = [
        GSM_Q.upper(),  # same question, other case
        "Before anything else: " + GSM_Q + " Answer in words.",  # embedded in a longer question
        "Natalia sold clips to 50 of her friends in June. How many apples did Tom eat on Sunday?",  # shares a few words only
        "What is the sum of the first ten positive integers?",
    ]
    train = rows_to_table([
        {"id": f"t-{i}", "source": "metamath", "split": "train", "question": q, "reasoning": "r", "answer": "1", "metadata": "{}"}
        for i, q in enumerate(train_rows)
    ])
    kept, removed = decontaminate(train, {"gsm8k": eval_table}, DecontaminationConfig(ngram=8, threshold=0.5))
    assert kept.column("id").to_pylist() == ["t-2", "t-3"]
    assert removed.schema.equals(QUARANTINE_SCHEMA)
    assert removed.column("row").to_pylist() == ["t-0", "t-1"]
    assert all("with gsm8k/gsm8k-0" in r and r.startswith("contaminated: shares") for r in removed.column("reason").to_pylist())
    assert json.loads(removed.column("raw")[0].as_py())["question"] == GSM_Q.upper()


def test_ngram_index_equals_brute_force_pairwise():
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(12)]

    def question() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(2, 14)))

    evals = [question() for _ in range(40)]
    trains = [question() for _ in range(200)]
    eval_table = rows_to_table([{"id": f"e{i}", "source": "x", "split": "test", "question": q, "reasoning": "", "answer": "1",
                                 "metadata": "{}"} for i, q in enumerate(evals)])
    index = NgramIndex({"x": eval_table}, n=3)
    for q in trains:
        grams = word_ngrams(q, 3)
        brute = max((len(grams & word_ngrams(e, 3)) / min(len(grams), len(word_ngrams(e, 3))) for e in evals), default=0.0)
        assert index.best_overlap(q)[0] == pytest.approx(brute)


# ------------------------------------------------------------------------------- the entry point


def test_ingest_end_to_end_writes_every_table(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="igpo.data.ingest")
    config = IngestConfig(
        metamath=MetaMathQAConfig(path=str(write_json_list(tmp_path / "MetaMathQA-395K.json", METAMATH_ROWS))),
        openr1=OpenR1Config(path=str(write_openr1(tmp_path / "openr1.parquet", _openr1_rows()))),
        gsm8k=EvalSetConfig(path=str(write_jsonl(tmp_path / "gsm8k.jsonl", GSM_ROWS))),
        math500=EvalSetConfig(path=str(write_jsonl(tmp_path / "math500.jsonl", MATH500_ROWS))),
        amc=EvalSetConfig(path=str(write_jsonl(tmp_path / "amc.jsonl", [{"problem": "What is $1+1$?", "answer": "2"}]))),
        demo={"num_train": 20, "num_test": 5, "num_steps": 3},
    )
    result = ingest(config)
    assert set(result.train) == {"metamath", "openr1", "demo"} and set(result.eval) == {"gsm8k", "math500", "amc", "demo"}
    mm = result.counts.sources["metamath"]
    assert (mm.valid, mm.decontaminated, mm.kept) == (3, 1, 2)  # the upper-cased GSM8K question is removed
    assert result.decontaminated.column("row").to_pylist() == ["metamath-8"]
    assert result.train["metamath"].num_rows == 2
    assert result.counts.total_quarantined == result.quarantine.num_rows == 5 + 3 + 3 + 1
    assert set(result.quarantine.column("source").to_pylist()) == {"metamath", "openr1", "gsm8k", "math500"}
    assert "ingest gsm8k: 5 read, 2 valid, 3 quarantined" in caplog.text

    paths = write_ingest_result(result, tmp_path / "out")
    assert read_table(paths["train_demo"]).num_rows == 20 and read_table(paths["eval_gsm8k"]).num_rows == 2
    assert read_table(paths["quarantine"], QUARANTINE_SCHEMA).num_rows == result.quarantine.num_rows
    assert json.loads(paths["counts"].read_text())["sources"]["metamath"]["decontaminated"] == 1
    for table in list(result.train.values()) + list(result.eval.values()):
        assert table.schema.equals(CANONICAL_SCHEMA)
    assert pa.concat_tables(list(result.train.values())).num_rows == 2 + 2 + 20  # one schema: tables concatenate


def test_ingest_config_needs_a_source_and_validates_fields():
    with pytest.raises(ValueError, match="at least one source"):
        IngestConfig()
    with pytest.raises(ValueError, match="threshold"):
        DecontaminationConfig(threshold=0)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        MetaMathQAConfig(path="x.json", typo=1)
