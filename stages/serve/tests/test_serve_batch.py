"""Batch inference: shards named by their content, answers equal to one-at-a-time generation, the merged table and
report, and a CLI run killed midway that, started again, answers only the shards it had not finished."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.serve.batch import ANSWER_COLUMNS, answer_shard, report_html, run_batch, shard, shard_name, write_shards
from llmft.serve.generator import Generator, RequestError
from llmft.testing import write_prompt_dataset


def test_shards_cover_every_prompt_once_and_are_named_by_content(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": [str(i) for i in range(10)], "prompt": [f"p{i}" for i in range(10)]})
    parts = shard(frame, 3)
    assert [len(p) for p in parts] == [4, 3, 3]
    assert [i for p in parts for i in p["id"]] == list(frame["id"])
    assert len(shard(frame.iloc[:2], 5)) == 2
    first = write_shards(frame, 3, tmp_path / "a")
    again = write_shards(frame, 3, tmp_path / "b")
    assert [p.name for p in first] == [p.name for p in again]  # same rows, same names, wherever written
    assert len({p.name for p in first}) == 3
    edited = frame.copy()
    edited.loc[9, "prompt"] = "changed"
    names = [p.name for p in write_shards(edited, 3, tmp_path / "c")]
    assert names[:2] == [p.name for p in first][:2] and names[2] != first[2].name  # only that shard's name moves
    assert shard_name(parts[0]) == first[0].name


def test_a_shard_answers_like_one_prompt_at_a_time(model_dir: Path) -> None:
    prompts = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "prompt": ["1+1?", "What is a long question about tasks?", "hi", "2+2?", "x y"],
        }
    )
    request = S.BatchInferenceRequest(shards=1, batch_size=3, generation=S.GenerationConfig(max_new_tokens=8))
    generator = Generator(model_dir, max_batch=3, max_queue=100)
    try:
        table = answer_shard(generator, prompts, request, "shard-x")
        assert list(table.columns) == ANSWER_COLUMNS
        assert list(table["id"]) == list(prompts["id"])  # the shard's order, though answered shortest first
        for row in table.itertuples():
            alone = generator.generate(
                S.GenerateRequest(
                    messages=[S.ChatMessage(role="user", content=row.prompt)],
                    generation=S.GenerationConfig(max_new_tokens=8),
                )
            )
            assert row.output == alone.text and row.completion_tokens == alone.usage.completion_tokens
            assert row.prompt_tokens == alone.usage.prompt_tokens and row.latency_seconds > 0
        assert generator.engine.stats().largest_batch == 3  # the shard's prompts shared forward passes
        bad = pd.DataFrame({"id": ["ok", "blank"], "prompt": ["fine", "   "]})
        with pytest.raises(RequestError, match="prompt id 'blank'"):
            answer_shard(generator, bad, request)
    finally:
        generator.close()


def test_run_batch_merges_with_a_result_and_a_report(model_dir: Path, tmp_path: Path) -> None:
    data = write_prompt_dataset(tmp_path / "prompts", rows=7)
    request = S.BatchInferenceRequest(shards=3, batch_size=2, generation=S.GenerationConfig(max_new_tokens=6))
    table, result = run_batch(model_dir, data, request, tmp_path / "work")
    assert len(table) == 7 == result.prompts
    assert sorted(table["id"]) == sorted(pd.read_parquet(data / "train.parquet")["id"])
    assert result.completion_tokens == table["completion_tokens"].sum() > 0 and result.tokens_per_second > 0
    assert table["shard"].nunique() == 3 and result.fingerprint.startswith("sha256:")
    html = report_html(table, result)
    assert "Batch inference" in html and "<img" in html and str(table["output"][0])[:20] in html


def shard_answers(work: Path) -> list[Path]:
    return sorted(work.glob("*.answers-*.parquet"))


def test_a_killed_cli_run_redoes_only_unfinished_shards(model_dir: Path, tmp_path: Path) -> None:
    data = write_prompt_dataset(tmp_path / "prompts", rows=24)
    out, work = tmp_path / "answers.parquet", tmp_path / "answers.shards"
    command = [sys.executable, "-m", "llmft.serve", "batch", "--model", str(model_dir), "--data", str(data),
               "--out", str(out), "--shards", "4", "--batch-size", "1", "--max-new-tokens", "48"]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not shard_answers(work) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = {p.name.split(".answers-")[0]: pd.read_parquet(p) for p in shard_answers(work)}
    assert 1 <= len(done) < 4, list(done)
    assert not out.exists()  # nothing half-written
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"reused the answers of {len(done)} of 4 shards" in second.stderr
    table = pd.read_parquet(out)
    assert sorted(table["id"]) == sorted(pd.read_parquet(data / "train.parquet")["id"])
    assert not work.exists()  # the shards' scratch is gone once the answers are whole
    # The finished shards' rows are the killed run's, measured timings included: they were not answered again.
    for name, saved in done.items():
        rows = table[table["shard"] == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, saved)
