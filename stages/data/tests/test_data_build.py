import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from llmft.core.datasets import read_manifest, read_split
from llmft.data.__main__ import main as cli
from llmft.data.build import DatasetRequestError, acquire_frame, build_dataset, prepare
from llmft.data.schemas import DataValidationError
from llmft.data.sources import SourceError
from llmft.proto.data.v1 import dataset_pb2 as D


def request(kind: D.DatasetKind, *patterns: str, fmt: str = "auto", **kwargs: object) -> D.DatasetRequest:
    return D.DatasetRequest(
        name="t",
        kind=kind,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=list(patterns)), format=fmt)],
        cleaning=D.CleaningConfig(normalize=True, deduplicate_exact=True),
        split=D.SplitConfig(eval_fraction=0.25, seed=0),
        **kwargs,  # type: ignore[arg-type]
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat(q: str, a: str) -> dict:
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def test_raw_text_from_a_folder_of_files(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(20):
        (docs / f"d{i}.md").write_text(f"# Doc {i}\r\nFlyte task number {i}.   \n")
    (docs / "copy.md").write_text("# Doc 3\nFlyte task number 3.\n")  # duplicate after normalisation
    (docs / "empty.txt").write_text("   \n")
    manifest, _ = build_dataset(request(D.DATASET_KIND_RAW_TEXT, str(docs)), tmp_path / "out")
    rows = {s.name: s.rows for s in manifest.splits}
    assert rows["train"] + rows["eval"] == 20
    assert {c.step: c.rows_removed for c in manifest.cleaning} == {
        "strip_control_characters": 0,
        "drop_blank": 1,
        "deduplicate_exact": 1,
    }
    train = read_split(tmp_path / "out", "train")
    assert set(train.columns) == {"id", "source", "text"}
    assert all("\r" not in t and not t.endswith(" ") for t in train["text"])
    assert read_manifest(tmp_path / "out") == manifest
    assert manifest.schema_version == "raw_text/1"


def test_alpaca_sharegpt_and_messages_all_become_conversations(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": "Add", "input": "1+1", "output": "2"}])
    write_jsonl(
        tmp_path / "sharegpt.jsonl",
        [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}],
    )
    write_jsonl(tmp_path / "messages.jsonl", [chat("Q?", "A.")])
    req = request(D.DATASET_KIND_CHAT, str(tmp_path / "*.jsonl"))
    req.split.eval_fraction = 0.0
    build_dataset(req, tmp_path / "out")
    conversations = sorted(json.loads(m)[0]["content"] for m in read_split(tmp_path / "out", "train")["messages"])
    assert conversations == ["Add\n\n1+1", "Hi", "Q?"]


def test_split_is_stable_when_rows_are_added(tmp_path: Path) -> None:
    rows = [chat(f"question {i}?", f"answer {i}.") for i in range(200)]
    write_jsonl(tmp_path / "a.jsonl", rows[:100])
    build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "a.jsonl")), tmp_path / "one")
    write_jsonl(tmp_path / "a.jsonl", rows)
    build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "a.jsonl")), tmp_path / "two")
    before = set(read_split(tmp_path / "one", "eval")["id"])
    after = set(read_split(tmp_path / "two", "eval")["id"])
    assert before and before <= after
    assert not before & set(read_split(tmp_path / "two", "train")["id"])
    assert 0.15 < len(after) / 200 < 0.35


def test_chat_and_preference_data_from_one_source_hold_out_the_same_questions(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tools.py").write_text(
        "".join(f'def tool_{i}(x):\n    """Turns a value into the {i}th tool output."""\n\n\n' for i in range(60))
    )
    source = D.DatasetSource(local=D.LocalSource(patterns=[str(tmp_path / "pkg")]), format="python_docstrings")
    held_out: dict[str, set[str]] = {}
    trained: dict[str, set[str]] = {}
    for kind, name in ((D.DATASET_KIND_CHAT, "chat"), (D.DATASET_KIND_PREFERENCE, "pairs")):
        req = D.DatasetRequest(name=name, kind=kind, sources=[source], split=D.SplitConfig(eval_fraction=0.25, seed=0))
        build_dataset(req, tmp_path / name)
        for split, into in (("eval", held_out), ("train", trained)):
            frame = read_split(tmp_path / name, split)
            if kind == D.DATASET_KIND_CHAT:
                into[name] = {json.loads(m)[0]["content"] for m in frame["messages"]}
            else:
                into[name] = set(frame["prompt"])
    # Split by the question, not by the row's content (which differs between a conversation and a pair): DPO and
    # PPO never train on a question the answer evaluation holds out.
    assert held_out["chat"] and held_out["chat"] == held_out["pairs"]
    assert not held_out["chat"] & trained["pairs"]


def test_rows_asking_the_same_question_share_a_split(tmp_path: Path) -> None:
    rows = [chat(f"question {i}?", f"answer {i}{suffix}") for i in range(60) for suffix in (".", "!", "?")]
    write_jsonl(tmp_path / "a.jsonl", rows)
    build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "a.jsonl")), tmp_path / "out")
    questions = {
        split: [json.loads(m)[0]["content"] for m in read_split(tmp_path / "out", split)["messages"]]
        for split in ("train", "eval")
    }
    assert questions["eval"] and not set(questions["eval"]) & set(questions["train"])
    assert len(questions["eval"]) == 3 * len(set(questions["eval"]))  # all three answers of a held-out question


def test_same_content_under_another_path_gives_the_same_fingerprint(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_jsonl(tmp_path / name / "x.jsonl", [chat("Q?", "A."), chat("R?", "B.")])
    one, _ = build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "a")), tmp_path / "out-a")
    two, _ = build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "b")), tmp_path / "out-b")
    assert one.fingerprint == two.fingerprint
    write_jsonl(tmp_path / "b" / "x.jsonl", [chat("Q?", "A!"), chat("R?", "B.")])
    three, _ = build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "b")), tmp_path / "out-c")
    assert three.fingerprint != one.fingerprint


def test_token_statistics_with_a_tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMFT_CACHE", str(tmp_path / "cache"))
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "word " * n} for n in (1, 5, 50, 400)])
    req = request(D.DATASET_KIND_PROMPT, str(tmp_path / "p.jsonl"), tokenizer="llmft/tiny-llama", max_tokens=100)
    req.split.eval_fraction = 0.0
    manifest, report = build_dataset(req, tmp_path / "out")
    train = next(s for s in manifest.splits if s.name == "train")
    assert train.tokens == sum(report["tokens"]["train"]) > 400
    assert train.rows_over_max_tokens == 1
    assert manifest.tokenizer_fingerprint.startswith("sha256:")


def test_chat_token_statistics_with_a_tokenizer_that_ships_no_template(tmp_path: Path) -> None:
    """A RedPajama-INCITE tokenizer as the Hub ships it: chat rows cannot be counted without a template, so the
    request is refused naming `chat_template`; with the family's chosen, rows are counted in its format."""
    from llmft.data.build import DatasetRequestError
    from llmft.testing_tokenizers import write_family_tokenizer

    tokenizer = write_family_tokenizer("redpajama-incite", tmp_path / "tok")
    write_jsonl(tmp_path / "c.jsonl", [chat(f"What is {n} plus 1?", f"{n} plus 1 is {n + 1}.") for n in range(8)])
    req = request(D.DATASET_KIND_CHAT, str(tmp_path / "c.jsonl"), tokenizer=str(tokenizer))
    with pytest.raises(DatasetRequestError, match="has no chat template; set chat_template to one of"):
        build_dataset(req, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    req.chat_template = "redpajama-incite"
    manifest, report = build_dataset(req, tmp_path / "out")
    from transformers import AutoTokenizer

    from llmft.core.chat_templates import FORMATS
    from llmft.core.models import tokenizer_fingerprint

    counter = AutoTokenizer.from_pretrained(tokenizer)
    counter.chat_template = FORMATS["redpajama-incite"].template
    rows = pd.concat([read_split(tmp_path / "out", split) for split in ("train", "eval")])
    expected = sum(
        len(counter.apply_chat_template(json.loads(m), tokenize=True)["input_ids"]) for m in rows["messages"]
    )
    assert sum(split.tokens for split in manifest.splits) == expected
    # The statistics' tokenizer is the files and the chosen template, not the files alone.
    assert manifest.tokenizer_fingerprint not in ("", tokenizer_fingerprint(tokenizer))


def test_preference_pairs_reject_chosen_equal_to_rejected(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "p.jsonl",
        [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}, {"prompt": "Sky?", "chosen": "blue", "rejected": "blue"}],
    )
    with pytest.raises(DataValidationError, match=r"p.jsonl:2 \(row 1\).*chosen equals rejected"):
        build_dataset(request(D.DATASET_KIND_PREFERENCE, str(tmp_path / "p.jsonl")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([{"role": "assistant", "content": "Hi"}], "expected role 'user'"),
        ([{"role": "user", "content": "Hi"}], "last turn must be the assistant's"),
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}], "turn 1: empty content"),
        ([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}], "role 'robot'"),
        (
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}],
            "roles must alternate",
        ),
    ],
)
def test_bad_conversations_fail_with_file_row_and_reason(tmp_path: Path, messages: list, problem: str) -> None:
    write_jsonl(tmp_path / "c.jsonl", [chat("fine?", "yes."), {"messages": messages}])
    with pytest.raises(DataValidationError, match=rf"c.jsonl:2 \(row 1\): field 'messages'.*{problem}"):
        build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "c.jsonl")), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_malformed_jsonl_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text(json.dumps(chat("a?", "b.")) + "\n{not json\n")
    with pytest.raises(SourceError, match=r"bad.jsonl:2: malformed JSON"):
        acquire_frame(request(D.DATASET_KIND_CHAT, str(tmp_path / "bad.jsonl")))


def test_missing_and_mistyped_fields_are_named(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok"}, {"question": "where?"}])
    with pytest.raises(SourceError, match=r"p.jsonl:2: missing field 'prompt' \(fields present: question\)"):
        acquire_frame(request(D.DATASET_KIND_PROMPT, str(tmp_path / "p.jsonl")))
    write_jsonl(tmp_path / "q.jsonl", [{"prompt": 42}])
    with pytest.raises(SourceError, match=r"q.jsonl:1: field 'prompt' is int, expected str"):
        acquire_frame(request(D.DATASET_KIND_PROMPT, str(tmp_path / "q.jsonl")))


def test_non_utf8_bytes_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("line one\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(SourceError, match=r"latin1.txt:2: not valid UTF-8"):
        acquire_frame(request(D.DATASET_KIND_RAW_TEXT, str(tmp_path / "latin1.txt")))


def test_missing_file_and_empty_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetRequestError, match=r"sources\[0\].local.patterns\[0\]: .*nope.txt' matches no file"):
        acquire_frame(request(D.DATASET_KIND_RAW_TEXT, str(tmp_path / "nope.txt")))
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(
        SourceError, match="cleaning left none of the 1 rows read: drop_blank removed 1 \\(the first: .*blank.txt\\)"
    ):
        acquire_frame(request(D.DATASET_KIND_RAW_TEXT, str(tmp_path / "blank.txt")))


def test_an_existing_output_folder_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("some text")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        build_dataset(request(D.DATASET_KIND_RAW_TEXT, str(tmp_path / "doc.txt")), out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_gives_the_same_manifest_as_the_library_and_exits_non_zero_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_jsonl(tmp_path / "c.jsonl", [chat(f"q{i}?", f"a{i}.") for i in range(10)])
    code = cli(
        [
            "--name",
            "t",
            "--kind",
            "chat",
            "--local",
            str(tmp_path / "c.jsonl"),
            "--eval-fraction",
            "0.25",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 0
    library, _ = build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "c.jsonl")), tmp_path / "lib")
    assert read_manifest(tmp_path / "cli").fingerprint == library.fingerprint
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    capsys.readouterr()
    code = cli(["--kind", "chat", "--local", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "bad")])
    assert code == 2
    assert "bad.jsonl:1: malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_request_file_with_a_key_given_twice_is_refused_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "chat.yaml"
    text = example.read_text()
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text(text + "name: another-name\n")
    assert cli(["--request", str(repeated), "--out", str(tmp_path / "chat")]) == 2
    line = len(text.splitlines()) + 1
    assert f"{repeated}:{line}: key 'name' given twice" in capsys.readouterr().err
    assert not (tmp_path / "chat").exists()
    repeated.write_text(text.replace("name:", "nmae:", 1))  # an unknown key: named with the closest field
    assert cli(["--request", str(repeated), "--out", str(tmp_path / "chat")]) == 2
    assert f"{repeated}: nmae: unknown field of DatasetRequest; did you mean 'name'?" in capsys.readouterr().err
    assert not (tmp_path / "chat").exists()


def test_the_example_request_the_cli_help_names_builds_a_chat_dataset(tmp_path: Path) -> None:
    import llmft.data.__main__ as command

    example = Path(__file__).resolve().parents[1] / "examples" / "chat.yaml"
    assert "--request stages/data/examples/chat.yaml" in (command.__doc__ or "")
    assert cli(["--request", str(example), "--out", str(tmp_path / "chat")]) == 0
    manifest = read_manifest(tmp_path / "chat")
    assert manifest.kind == D.DATASET_KIND_CHAT and manifest.name == "flytekit-chat"
    rows = {split.name: split.rows for split in manifest.splits}
    assert rows["train"] > 500 and rows["eval"] > 50
    first = json.loads(read_split(tmp_path / "chat", "eval")["messages"][0])
    assert first[0]["role"] == "user" and "`" in first[0]["content"] and first[1]["role"] == "assistant"


def test_prepare_validates_rows_it_is_handed(tmp_path: Path) -> None:
    frame = pd.DataFrame({"id": ["a", "a"], "source": ["x:1", "x:2"], "text": ["one", "two"]})
    with pytest.raises(DataValidationError, match="field 'id'") as error:
        prepare(request(D.DATASET_KIND_RAW_TEXT, "unused"), [frame], D.DatasetManifest(), tmp_path / "out")
    failure: Any = error.value
    assert {f["field"] for f in failure.failures} == {"id"}
    assert not (tmp_path / "out").exists()


def test_ids_must_be_unique_across_chunks_not_only_within_one(tmp_path: Path) -> None:
    """pandera's `unique` sees one chunk; the dataset-wide check sees them all: an id repeated three chunks later
    fails, naming both rows by their number in the dataset, and nothing is written. The same rows with distinct ids
    are a dataset, with no scratch files left beside it."""

    def chunk(first: int, ids: list[str]) -> pd.DataFrame:
        rows = range(first, first + len(ids))
        return pd.DataFrame({"id": ids, "source": [f"x:{i + 1}" for i in rows], "text": [f"row {i}" for i in rows]})

    ids = [[f"id-{c}-{r}" for r in range(3)] for c in range(4)]
    repeated = [list(i) for i in ids]
    repeated[3][2] = ids[0][1]  # row 11 repeats row 1's id
    wanted = request(D.DATASET_KIND_RAW_TEXT, "unused")
    with pytest.raises(DataValidationError, match=r"^1 row\(s\) repeat .*: row 11 repeats the id of row 1$"):
        prepare(wanted, [chunk(3 * c, i) for c, i in enumerate(repeated)], D.DatasetManifest(), tmp_path / "out")
    assert not list(tmp_path.iterdir())
    manifest, _ = prepare(wanted, [chunk(3 * c, i) for c, i in enumerate(ids)], D.DatasetManifest(), tmp_path / "out")
    assert sum(s.rows for s in manifest.splits) == 12
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_python_package_source_reads_installed_code_and_derives_docstring_chats(tmp_path: Path) -> None:
    req = D.DatasetRequest(
        name="pkg",
        kind=D.DATASET_KIND_CHAT,
        sources=[
            D.DatasetSource(python_package=D.PythonPackageSource(packages=["pandera"]), format="python_docstrings")
        ],
        split=D.SplitConfig(eval_fraction=0.1),
    )
    frame, summary = acquire_frame(req)
    assert len(frame) > 50
    first = json.loads(frame["messages"].iloc[0])
    assert first[0]["content"].startswith("What does `") and first[1]["role"] == "assistant"
    assert summary.source_fingerprints[0].startswith("sha256:")
    missing = D.DatasetRequest(
        name="x",
        kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(python_package=D.PythonPackageSource(packages=["no-such-dist"]))],
    )
    with pytest.raises(DatasetRequestError, match="'no-such-dist' is not installed on this machine"):
        acquire_frame(missing)


def test_docstrings_give_preference_pairs_whose_rejected_answer_names_the_wrong_kind_or_module(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")  # a package: the wrong module can be its parent, `pkg`
    (tmp_path / "pkg" / "tools.py").write_text(
        "".join(f'def tool_{i}(x):\n    """Turns a value into the {i}th tool output."""\n\n\n' for i in range(12))
        + 'class Box:\n    """Holds one value for the tools above."""\n'
    )
    req = D.DatasetRequest(
        name="pairs",
        kind=D.DATASET_KIND_PREFERENCE,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(tmp_path / "pkg")]), format="python_docstrings")],
    )
    frame, _ = acquire_frame(req)
    assert len(frame) == 13
    module = frame["chosen"].iloc[0].split(" in `", 1)[1].split("`", 1)[0]
    assert module == "pkg.tools"
    kinds = {"function": 0, "class": 0, "module": 0}
    for row in frame.itertuples():
        chosen_first, rejected_first = row.chosen.split(". ", 1)[0], row.rejected.split(". ", 1)[0]
        assert row.chosen.startswith(rejected_first.split(" is a ")[0]) and chosen_first != rejected_first
        assert row.chosen.split(". ", 1)[1] == row.rejected.split(". ", 1)[1]  # only the first sentence differs
        assert row.prompt == f"What does {chosen_first.split(' is a ')[0]} in `{module}` do?"
        if f"in `{module}`" not in rejected_first:
            kinds["module"] += 1
        else:
            kinds[rejected_first.split(" is a ")[1].split(" ")[0]] += 1
    assert kinds["module"] > 0 and kinds["function"] + kinds["class"] > 0  # both kinds of corruption occur


def test_docstring_modules_are_named_as_python_imports_them_wherever_the_tree_sits(tmp_path: Path) -> None:
    def tree(root: Path) -> Path:
        package = root / "src" / "mylib"
        (package / "core").mkdir(parents=True)
        (package / "__init__.py").write_text('"""The library."""\n')
        (package / "core" / "__init__.py").write_text(
            'class Engine:\n    """Runs the jobs of the library in order."""\n'
        )
        (package / "core" / "jobs.py").write_text('def run(job):\n    """Runs one job and returns its result."""\n')
        (package / "core" / "native.pyi").write_text('def fast(x):\n    """Computes the value in native code."""\n')
        (root / "src" / "script.py").write_text('def main():\n    """Starts the script from the command line."""\n')
        namespace = root / "src" / "nspkg" / "sub"  # a namespace package: no __init__.py
        namespace.mkdir(parents=True)
        (namespace / "mod.py").write_text('def parse(text):\n    """Parses one line of text into a record."""\n')
        return root / "src"

    def build(root: Path) -> tuple[list[str], str]:
        req = D.DatasetRequest(
            name="modules",
            kind=D.DATASET_KIND_PROMPT,
            sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(tree(root))]), format="python_docstrings")],
        )
        frame, _ = acquire_frame(req)
        manifest, _ = build_dataset(req, root / "out")
        return sorted(frame["prompt"]), manifest.fingerprint

    here, there = build(tmp_path / "a"), build(tmp_path / "b" / "deeper")
    assert here[0] == [
        "What does `Engine` in `mylib.core` do?",
        "What does `fast` in `mylib.core.native` do?",  # a stub file names its module without `.pyi`
        "What does `main` in `script` do?",
        "What does `parse` in `nspkg.sub.mod` do?",
        "What does `run` in `mylib.core.jobs` do?",
    ]
    assert here == there  # the same code elsewhere on disk is the same dataset

    # A `src` folder above the pattern (code kept in ~/src, say) is not an import root: the pattern's folder is.
    project = tmp_path / "src" / "project"
    project.mkdir(parents=True)
    (project / "app.py").write_text('def serve():\n    """Serves the app until it is stopped."""\n')
    for pattern in (str(project), str(project / "*.py"), str(project / "app.py")):
        req = D.DatasetRequest(
            name="modules",
            kind=D.DATASET_KIND_PROMPT,
            sources=[D.DatasetSource(local=D.LocalSource(patterns=[pattern]), format="python_docstrings")],
        )
        assert list(acquire_frame(req)[0]["prompt"]) == ["What does `serve` in `app` do?"], pattern


def test_validation_failures_render_for_the_deck(tmp_path: Path) -> None:
    from llmft.data.report import failures_html

    write_jsonl(tmp_path / "c.jsonl", [chat("ok?", "yes."), {"messages": [{"role": "user", "content": "alone"}]}])
    with pytest.raises(DataValidationError) as error:
        build_dataset(request(D.DATASET_KIND_CHAT, str(tmp_path / "c.jsonl")), tmp_path / "out")
    html = failures_html(error.value)  # type: ignore[arg-type]
    assert "Validation failures" in html
    assert "c.jsonl:2" in html and "last turn must be the assistant&#x27;s" in html


def test_arrow_helpers_select_rows_and_count_characters_as_python_does() -> None:
    """The merge's pyarrow.compute-free helpers: `arrow_rows` keeps the flagged rows in order, `utf8_lengths` counts
    code points (not bytes) of every row, slices of a shared buffer included."""
    import numpy as np
    import pyarrow as pa

    from llmft.data.build import arrow_rows, arrow_strings, utf8_lengths

    values = ["", "plain", "é", "日本語", "😀 x", "", "naïve café", "end"]
    table = pa.Table.from_arrays([arrow_strings(values)], names=["text"])
    assert utf8_lengths(table.column("text")).tolist() == [len(v) for v in values]
    rng = np.random.default_rng(0)
    for _ in range(20):
        keep = rng.random(len(values)) < 0.5
        part = arrow_rows(table, keep)
        kept = [v for v, k in zip(values, keep, strict=True) if k]
        assert part.column("text").to_pylist() == kept
        assert utf8_lengths(part.column("text")).tolist() == [len(v) for v in kept]
    assert utf8_lengths(arrow_strings(["ab", "cdé"]).slice(1)).tolist() == [3]
    with pytest.raises(ValueError, match="3 flags for 8 rows"):
        arrow_rows(table, [True, False, True])
