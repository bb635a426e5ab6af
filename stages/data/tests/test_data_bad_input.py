"""Bad input never passes silently: each case is refused with a message that names the file, row or field and the
real problem (exit 2, no output folder), or, where dropping is the documented behaviour, the command says on stderr
how many rows each step removed and where the first one came from."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from llmft.core.datasets import read_manifest, read_split
from llmft.data.__main__ import main
from llmft.data.build import build_dataset
from llmft.data.schemas import DataValidationError
from llmft.data.sources import SourceError, check_git_repository, split_git_spec
from llmft.proto.data.v1 import dataset_pb2 as D


def jsonl(*rows: object) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def chat_with(content: object) -> dict:
    return {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": "an answer"}]}


# (files, --kind, the message on stderr)
REFUSED = {
    "nul_bytes": (
        {"a.txt": b"\x00" * 64, "b.txt": b"real text"},
        "raw_text",
        "a.txt: holds NUL bytes (the first at byte 0)",
    ),
    "empty_file": ({"a.txt": b"", "b.txt": b"real text"}, "raw_text", "a.txt: the file is empty"),
    "number_content": ({"c.jsonl": jsonl(chat_with(5))}, "chat", "c.jsonl:1: field 'messages[0].content' is int"),
    "null_content": ({"c.jsonl": jsonl(chat_with(None))}, "chat", "c.jsonl:1: field 'messages[0].content' is null"),
    "object_content": ({"c.jsonl": jsonl(chat_with({"a": 1}))}, "chat", "'messages[0].content' is dict"),
    "sharegpt_number": (
        {"c.jsonl": jsonl({"conversations": [{"from": "human", "value": 3}, {"from": "gpt", "value": "x"}]})},
        "chat",
        "c.jsonl:1: field 'conversations[0].value' is int",
    ),
    "ragged_csv": (
        {"p.csv": b"prompt,chosen,rejected\nq1,a\n"},
        "preference",
        "p.csv:2: 2 values for the 3 columns of the header (prompt, chosen, rejected)",
    ),
    "long_csv_row": (
        {"p.csv": b"prompt,chosen,rejected\nq1,a,b,c\n"},
        "preference",
        "p.csv:2: 4 values for the 3 columns",
    ),
    "null_prompt": (
        {"p.jsonl": jsonl({"prompt": None, "chosen": "a", "rejected": "b"})},
        "preference",
        "p.jsonl:1: field 'prompt' is null, expected text",
    ),
    "missing_prompt": ({"p.jsonl": jsonl({"chosen": "a", "rejected": "b"})}, "preference", "missing field 'prompt'"),
    "chosen_is_rejected": (
        {"p.jsonl": jsonl({"prompt": "q", "chosen": "same", "rejected": "same"})},
        "preference",
        "1 DATASET_KIND_PREFERENCE schema failure(s):\n",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_bad_input_is_refused_naming_the_file_and_the_real_problem(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, kind, message = REFUSED[case]
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    args = ["--kind", kind, "--out", str(tmp_path / "out")]
    for name in files:
        args += ["--local", str(tmp_path / name)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    if case == "chosen_is_rejected":  # blamed on the two fields it compares, not on id and source
        assert "p.jsonl:1 (row 0): field 'chosen, rejected' failed chosen equals rejected\n" in err
        assert "'id'" not in err and "'source'" not in err
    assert "Traceback" not in err and "empty content" not in err
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out-*"))  # no staging folder left either


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--drop-pattern", "ok", "--drop-pattern", "(unclosed"],
            "cleaning.drop_patterns[1]: invalid regular expression",
        ),
        (["--near-dup", "1.5"], "cleaning.near_duplicate_threshold: must be in (0, 1] (0 disables), got 1.5"),
        (["--min-chars", "50", "--max-chars", "10"], "cleaning.min_chars: 50 is above max_chars 10"),
    ],
)
def test_bad_cleaning_settings_are_refused_before_any_file_is_read(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each named with its field; the source is not JSON, so an error about its rows would mean it was read."""
    (tmp_path / "rows.jsonl").write_text("{not json\n")
    args = ["--kind", "raw_text", "--local", str(tmp_path / "rows.jsonl"), "--out", str(tmp_path / "out"), *options]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "rows.jsonl" not in err, err
    assert not (tmp_path / "out").exists()


def test_what_cleaning_drops_is_counted_on_stderr_with_the_first_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [{"prompt": "hello"}, {"prompt": "   "}, {"prompt": "hello"}, {"prompt": ""}, {"prompt": "bell\u0007 rings"}]
    (tmp_path / "p.jsonl").write_bytes(jsonl(*rows))
    assert main(["--kind", "prompt", "--local", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    where = tmp_path / "p.jsonl"
    assert f"cleaning: drop_blank removed 2 row(s), the first from {where}:2" in err
    assert f"cleaning: deduplicate_exact removed 1 row(s), the first from {where}:3" in err
    assert f"cleaning: strip_control_characters changed 1 row(s), the first from {where}:5" in err
    manifest = read_manifest(tmp_path / "out")
    steps = {s.step: (s.rows_removed, s.rows_changed, s.first_row) for s in manifest.cleaning}
    assert steps["drop_blank"] == (2, 0, f"{where}:2")
    prompts = pd.concat([read_split(tmp_path / "out", s) for s in ("train", "eval")])["prompt"]
    assert sorted(prompts) == ["bell rings", "hello"]


def test_python_files_that_do_not_parse_are_counted_on_stderr_and_in_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "good.py").write_text('def tool(x):\n    """Turns a value into the output of the tool."""\n')
    (code / "old.py").write_text('def shout(x):\n    print "python 2"\n')
    (code / "NOTES.md").write_text("Notes on the tools, not Python.\n")  # not read: python_docstrings reads .py files
    args = ["--kind", "prompt", "--format", "python_docstrings", "--local", str(code), "--out", str(tmp_path / "out")]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"cleaning: skip_unparsable_python skipped 1 file(s), the first {code / 'old.py'}:2 (" in err, err
    steps = {s.step: (s.rows_removed, s.first_row) for s in read_manifest(tmp_path / "out").cleaning}
    assert steps["skip_unparsable_python"][0] == 1
    prompts = pd.concat([read_split(tmp_path / "out", s) for s in ("train", "eval")])["prompt"]
    assert list(prompts) == ["What does `tool` in `good` do?"]

    (code / "good.py").unlink()  # only the unparsable file left: the error says why there are no rows
    assert main([*args[:-1], str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert f"the sources hold no rows: 1 Python file(s) do not parse, the first {code / 'old.py'}:2 (" in err, err
    assert not (tmp_path / "out2").exists()

    (code / "old.py").unlink()  # no Python file at all: said so, naming the pattern
    assert main([*args[:-1], str(tmp_path / "out3")]) == 2
    assert f"{code}: the pattern matches no Python files (.py, .pyi)" in capsys.readouterr().err


def test_control_characters_are_refused_without_normalisation(tmp_path: Path) -> None:
    (tmp_path / "t.jsonl").write_bytes(jsonl({"text": "escape \u001b[31m red"}, {"text": "fine"}))
    request = D.DatasetRequest(
        name="t",
        kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(local=D.LocalSource(patterns=[str(tmp_path / "t.jsonl")]))],
        cleaning=D.CleaningConfig(normalize=False),
    )
    with pytest.raises(DataValidationError, match=r"t.jsonl:1 \(row 0\): field 'text' failed .*U\+001B at offset 7"):
        build_dataset(request, tmp_path / "out")
    chat = tmp_path / "c.jsonl"
    chat.write_bytes(jsonl(chat_with("tab\tis fine, bell\u0007 is not")))
    request.kind, request.sources[0].local.patterns[0] = D.DATASET_KIND_CHAT, str(chat)
    with pytest.raises(DataValidationError, match="turn 0: control character U\\+0007 at offset 17"):
        build_dataset(request, tmp_path / "out")


def test_a_csv_saved_with_a_byte_order_mark_reads_like_one_without(tmp_path: Path) -> None:
    body = "prompt,chosen,rejected\nWhat is 2+2?,4,5\nAnd 3+3?,6,7\n"
    outs = []
    for name, data in (("plain.csv", body.encode()), ("bom.csv", b"\xef\xbb\xbf" + body.encode())):
        (tmp_path / name).write_bytes(data)
        out = tmp_path / f"out-{name}"
        assert main(["--kind", "preference", "--local", str(tmp_path / name), "--out", str(out)]) == 0
        outs.append(pd.concat([read_split(out, s) for s in ("train", "eval")]).sort_values("id"))
    assert outs[0]["prompt"].tolist() == outs[1]["prompt"].tolist() and "What is 2+2?" in outs[1]["prompt"].tolist()


def test_a_text_file_loses_its_byte_order_mark(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfHello")
    assert main(["--kind", "raw_text", "--local", str(tmp_path / "a.txt"), "--out", str(tmp_path / "out")]) == 0
    assert pd.concat([read_split(tmp_path / "out", s) for s in ("train", "eval")])["text"].tolist() == ["Hello"]


@pytest.mark.parametrize(
    "repository", ["--upload-pack=touch pwned", "-c core.sshCommand=x", "just words", "org/repo", ""]
)
def test_a_git_source_must_look_like_a_url_or_a_path(repository: str) -> None:
    with pytest.raises(SourceError, match="git.repository: "):
        check_git_repository(repository)


@pytest.mark.parametrize(
    "repository", ["https://github.com/flyteorg/flytekit.git", "git@github.com:org/repo.git", "file:///srv/r", "/srv/r"]
)
def test_urls_addresses_and_paths_are_accepted_as_git_sources(repository: str) -> None:
    check_git_repository(repository)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("https://github.com/o/r.git", ("https://github.com/o/r.git", "")),
        ("https://github.com/o/r.git@v1.2", ("https://github.com/o/r.git", "v1.2")),
        ("https://github.com/o/r@feature/x", ("https://github.com/o/r", "feature/x")),  # a branch with a slash
        ("git@github.com:o/r.git", ("git@github.com:o/r.git", "")),
        ("git@github.com:o/r.git@main", ("git@github.com:o/r.git", "main")),
        ("git@host:repo.git", ("git@host:repo.git", "")),  # an scp-like address without a slash
        ("https://user@host/o/r", ("https://user@host/o/r", "")),  # a user in the URL
        ("ssh://git@host/o/r.git@v1", ("ssh://git@host/o/r.git", "v1")),
        ("/srv/r@main", ("/srv/r", "main")),
    ],
)
def test_the_cli_splits_a_git_spec_at_the_revision_only(spec: str, expected: tuple[str, str]) -> None:
    assert split_git_spec(spec) == expected


def test_the_cli_refuses_an_option_like_git_source_before_git_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["--kind", "raw_text", f"--git=--upload-pack=touch {tmp_path}/pwned", "--out", str(tmp_path / "o")]) == 2
    )
    assert "is neither a URL" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_out_that_is_a_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.txt").write_text("text")
    (tmp_path / "taken").write_text("mine")
    assert main(["--kind", "raw_text", "--local", str(tmp_path / "a.txt"), "--out", str(tmp_path / "taken")]) == 2
    assert "taken: is a file, not an output folder" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "mine"


def test_every_source_problem_is_named_before_any_source_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rows.jsonl").write_text("{not json\n")  # read first, it would fail on its first line
    args = ["--kind", "raw_text", "--local", str(tmp_path / "rows.jsonl"), "--local", str(tmp_path / "gone/*.txt")]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"sources[1].local.patterns[0]: {str(tmp_path / 'gone/*.txt')!r} matches no file on this machine" in err
    assert "line 1" not in err and not (tmp_path / "out").exists()


def test_source_problems_name_each_field_and_check_this_machine_only_when_asked(tmp_path: Path) -> None:
    from llmft.data.sources import source_problems

    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n')
    found = D.DatasetSource(local=D.LocalSource(patterns=[str(tmp_path / "*.jsonl")]))
    absent = D.DatasetSource(local=D.LocalSource(patterns=[str(tmp_path / "a.jsonl"), str(tmp_path / "b/*.csv")]))
    package = D.DatasetSource(python_package=D.PythonPackageSource(packages=["flytekit", "no-such-dist-llmft"]))
    assert source_problems(found, here=True) == []
    assert source_problems(absent) == [] and source_problems(package) == []  # elsewhere, a pod's files may differ
    assert source_problems(absent, here=True) == [f"local.patterns[1]: {str(tmp_path / 'b/*.csv')!r} matches no file "
                                                  "on this machine"]  # fmt: skip
    assert source_problems(package, here=True) == [
        "python_package.packages[1]: 'no-such-dist-llmft' is not installed on this machine"
    ]
    shapes = [
        (D.DatasetSource(format="yaml", local=D.LocalSource(patterns=["x"])), "format: 'yaml' is not one of"),
        (D.DatasetSource(), "source: none of local, url, git, hub or python_package is set"),
        (D.DatasetSource(url=D.UrlSource(urls=["file:///etc/passwd"])), "url.urls[0]: 'file:///etc/passwd' is not an"),
        (D.DatasetSource(git=D.GitSource(repository="-x")), "git.repository: '-x' is neither a URL"),
        (D.DatasetSource(hub=D.HubDatasetSource()), "hub.dataset_id: empty"),
    ]
    for source, problem in shapes:
        assert len(source_problems(source)) == 1 and source_problems(source)[0].startswith(problem), source
