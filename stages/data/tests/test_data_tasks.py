"""The data stage under flytekit's local executor: the pandera plugin at the task boundary, caching on content (not
paths), and the same manifest from the CLI, the acquire/prepare tasks and the streaming task."""

import json
from pathlib import Path

import pytest
from flytekit import workflow

from llmft.data.__main__ import main as cli
from llmft.data.tasks import Prepared, acquire_chat, build, prepare_chat
from llmft.proto.data.v1 import dataset_pb2 as D


@pytest.fixture(autouse=True)
def _fresh_flyte_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # flytekit's local cache lives in ~/.flyte


@workflow
def chat_dataset(request: D.DatasetRequest) -> Prepared:
    acquired = acquire_chat(request=request)
    return prepare_chat(config=acquired.config, rows=acquired.rows, acquisition=acquired.acquisition)


def write_chat(folder: Path, answers: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"messages": [{"role": "user", "content": f"q{i}?"}, {"role": "assistant", "content": a}]}
        for i, a in enumerate(answers)
    ]
    (folder / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def chat_request(folder: Path) -> D.DatasetRequest:
    return D.DatasetRequest(
        name="chat",
        kind=D.DATASET_KIND_CHAT,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(folder)]))],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True),
        split=D.SplitConfig(eval_fraction=0.3, seed=1),
    )


def test_prepare_is_cached_on_content_not_path(tmp_path: Path) -> None:
    answers = [f"answer {i}." for i in range(20)]
    first = chat_dataset(request=chat_request(write_chat(tmp_path / "a", answers)))
    moved = chat_dataset(request=chat_request(write_chat(tmp_path / "elsewhere" / "b", answers)))
    assert moved.manifest == first.manifest
    assert moved.data.path == first.data.path  # a cache hit hands back the first run's folder
    changed = chat_dataset(request=chat_request(write_chat(tmp_path / "a", [*answers[:-1], "a new answer."])))
    assert changed.manifest.fingerprint != first.manifest.fingerprint
    assert changed.data.path != first.data.path


def test_cli_tasks_and_streaming_task_give_the_same_manifest(tmp_path: Path) -> None:
    folder = write_chat(tmp_path / "data", [f"answer {i}." for i in range(30)])
    request = chat_request(folder)
    assert (
        cli(["--request", str(write_request(tmp_path / "request.json", request)), "--out", str(tmp_path / "cli")]) == 0
    )
    from llmft.core.datasets import read_manifest

    from_cli = read_manifest(tmp_path / "cli")
    from_tasks = chat_dataset(request=request).manifest
    from_stream = build(request=request).manifest
    assert from_cli == from_tasks == from_stream


def write_request(path: Path, request: D.DatasetRequest) -> Path:
    from google.protobuf import json_format

    path.write_text(json_format.MessageToJson(request))
    return path


def test_the_pandera_plugin_refuses_bad_rows_at_the_task_boundary_before_the_task_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows that break the ChatRow schema are refused by flytekit's pandera plugin as they cross into prepare: the
    task's own code never runs (without the plugin the frame would reach it), and the error is pandera's, naming the
    check."""
    import pandera.errors

    from llmft.data import tasks

    acquired = acquire_chat(request=chat_request(write_chat(tmp_path / "data", [f"answer {i}." for i in range(6)])))
    bad = acquired.rows.copy()
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "?"}]
    bad.loc[2, "messages"] = json.dumps(turns)  # ends on the user's turn: no answer to learn
    ran: list[str] = []
    monkeypatch.setattr(tasks, "_prepare", lambda config, rows, acquisition: ran.append(config.name))

    with pytest.raises(Exception) as refused:
        prepare_chat(config=acquired.config, rows=bad, acquisition=acquired.acquisition)
    chain: list[BaseException] = []
    error: BaseException | None = refused.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    schema_errors = [e for e in chain if isinstance(e, pandera.errors.SchemaErrors | pandera.errors.SchemaError)]
    assert schema_errors, f"not refused by pandera: {refused.value!r}"
    assert "conversation" in str(schema_errors[0])  # the ChatRow check that failed, by name
    assert ran == []  # the task body never saw the rows
