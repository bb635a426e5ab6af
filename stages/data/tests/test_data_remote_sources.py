"""Sources that are remote in production, exercised offline: a git repository the test creates, a local HTTP server
the test starts, and Hugging Face dataset folders."""

import json
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llmft.data.build import acquire_frame
from llmft.data.sources import SourceError
from llmft.proto.data.v1 import dataset_pb2 as D


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# Project\nFirst version.\n")
    (path / "code.py").write_text("def f():\n    return 1\n")
    (path / "image.png").write_bytes(b"\x89PNG")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "one")
    return path


def git_request(repo: Path, revision: str) -> D.DatasetRequest:
    return D.DatasetRequest(
        name="g",
        kind=D.DATASET_KIND_RAW_TEXT,
        sources=[D.DatasetSource(git=D.GitSource(repository=str(repo), revision=revision))],
        cleaning=D.CleaningConfig(normalize=True),
    )


def test_git_source_reads_text_files_at_the_pinned_commit(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    (repo / "README.md").write_text("# Project\nSecond version.\n")
    git(repo, "commit", "-qam", "two")
    old, old_summary = acquire_frame(git_request(repo, first))
    new, new_summary = acquire_frame(git_request(repo, "main"))
    assert sorted(old["text"]) == ["# Project\nFirst version.", "def f():\n    return 1"]
    assert "# Project\nSecond version." in list(new["text"])
    assert old_summary.source_fingerprints != new_summary.source_fingerprints
    assert all(first[:12] in s for s in old["source"])


def test_git_source_fetches_the_pinned_commit_without_its_history(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A branch or a full commit id is fetched alone (--depth 1): the checkout holds one commit, not the three of the
    repository. An abbreviated id cannot be fetched by name, so that one is cloned whole, and still resolves."""
    from llmft.data import sources

    first = git(repo, "rev-parse", "HEAD")
    for version in ("Second", "Third"):
        (repo / "README.md").write_text(f"# Project\n{version} version.\n")
        git(repo, "commit", "-qam", version)
    commits: list[int] = []
    real = sources._git

    def counting(*args: str, cwd: Path | None = None) -> str:
        if args[0] == "ls-files":  # the checkout is complete: count the commits it holds
            commits.append(int(real("rev-list", "--count", "--all", cwd=cwd)))
        return real(*args, cwd=cwd)

    monkeypatch.setattr(sources, "_git", counting)
    texts = [sorted(acquire_frame(git_request(repo, revision))[0]["text"]) for revision in ("main", first, first[:8])]
    assert commits == [1, 1, 3]
    assert "# Project\nThird version." in texts[0]
    assert "# Project\nFirst version." in texts[1] and texts[1] == texts[2]


def test_git_docstrings_name_the_module_as_python_imports_it_not_the_repository_or_commit(repo: Path) -> None:
    # The repository's root is a package itself: the name still starts below the checkout, whose folder is a
    # temporary one.
    (repo / "__init__.py").write_text("")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "__init__.py").write_text('def version():\n    """Returns the version of the package as text."""\n')
    (repo / "pkg" / "mod.py").write_text('def tool(x):\n    """Turns a value into the output of the tool."""\n')
    namespace = repo / "libs" / "ns" / "src" / "ns" / "tools"  # a src layout of a namespace package: no __init__.py
    namespace.mkdir(parents=True)
    (namespace / "text.py").write_text('def clean(x):\n    """Cleans the text of one record."""\n')
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "package")
    request = D.DatasetRequest(
        name="g",
        kind=D.DATASET_KIND_PROMPT,
        sources=[D.DatasetSource(git=D.GitSource(repository=str(repo)), format="python_docstrings")],
    )
    frame, _ = acquire_frame(request)
    assert sorted(frame["prompt"]) == [
        "What does `clean` in `ns.tools.text` do?",
        "What does `tool` in `pkg.mod` do?",
        "What does `version` in `pkg` do?",
    ]


def test_git_ref_that_does_not_exist_fails_naming_it(repo: Path) -> None:
    with pytest.raises(SourceError, match="revision 'v9.9' does not exist"):
        acquire_frame(git_request(repo, "v9.9"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "chat.jsonl").write_text(
        json.dumps({"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}) + "\n"
    )
    handler = partial(SimpleHTTPRequestHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def url_request(url: str) -> D.DatasetRequest:
    return D.DatasetRequest(name="u", kind=D.DATASET_KIND_CHAT, sources=[D.DatasetSource(url=D.UrlSource(urls=[url]))])


def test_url_source_downloads_and_parses_by_extension(server: str) -> None:
    frame, _ = acquire_frame(url_request(f"{server}/chat.jsonl"))
    assert len(frame) == 1
    assert frame["source"].iloc[0] == f"{server}/chat.jsonl:1"


def test_url_docstrings_name_the_module_after_the_file_not_the_download(server: str, tmp_path: Path) -> None:
    (tmp_path / "www" / "tools.py").write_text('def tool(x):\n    """Turns a value into the output of the tool."""\n')
    request = D.DatasetRequest(
        name="u",
        kind=D.DATASET_KIND_PROMPT,
        sources=[D.DatasetSource(url=D.UrlSource(urls=[f"{server}/tools.py"]), format="python_docstrings")],
    )
    frame, _ = acquire_frame(request)
    assert list(frame["prompt"]) == ["What does `tool` in `tools` do?"]


def test_missing_and_unreachable_urls_fail_naming_the_url(server: str) -> None:
    with pytest.raises(SourceError, match=r"missing.jsonl: HTTP 404"):
        acquire_frame(url_request(f"{server}/missing.jsonl"))
    with pytest.raises(SourceError, match=r"http://127.0.0.1:9/x.jsonl: unreachable"):
        acquire_frame(url_request("http://127.0.0.1:9/x.jsonl"))


def hub_request(dataset_id: str, revision: str = "") -> D.DatasetRequest:
    return D.DatasetRequest(
        name="hub",
        kind=D.DATASET_KIND_CHAT,
        sources=[D.DatasetSource(hub=D.HubDatasetSource(dataset_id=dataset_id, split="train", revision=revision))],
    )


def alpaca_folder(folder: Path, rows: int, answer: str = "") -> Path:
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text(
        "".join(
            json.dumps({"instruction": f"Say {i}", "input": "", "output": f"{i}{answer}"}) + "\n" for i in range(rows)
        )
    )
    return folder


def test_a_hub_dataset_streams_without_loading_it_into_the_datasets_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hugging Face dataset source is read with `datasets` streaming: its rows arrive, and no Arrow copy of the
    dataset is written to the datasets cache (loading it whole writes one). Its fingerprint is its files' bytes,
    wherever the folder is."""
    import datasets

    cache = tmp_path / "datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    frame, summary = acquire_frame(hub_request(str(alpaca_folder(tmp_path / "a", 300))))
    assert len(frame) == 300 and json.loads(frame["messages"][299])[0] == {"role": "user", "content": "Say 299"}
    assert frame["source"][7].endswith("[train]:7")
    assert not [path.name for path in cache.rglob("*.arrow")]
    _, moved = acquire_frame(hub_request(str(alpaca_folder(tmp_path / "b", 300))))
    _, changed = acquire_frame(hub_request(str(alpaca_folder(tmp_path / "c", 300, answer="!"))))
    assert moved.source_fingerprints == summary.source_fingerprints != changed.source_fingerprints
    broken = tmp_path / "a" / "train.jsonl"
    broken.write_text(broken.read_text() + '{"instruction": "broken\n')
    with pytest.raises(SourceError, match=r"\[train\]:\d+: cannot read"):
        acquire_frame(hub_request(str(tmp_path / "a")))


def test_a_hub_dataset_is_read_at_the_commit_its_revision_resolves_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the Hub, the revision (a branch by default) is resolved to its commit first, and that commit is both what
    is streamed and what the fingerprint names: a new commit on the branch is a new fingerprint. (The Hub itself is
    out of reach here: its two calls answer from the test.)"""
    import datasets
    import huggingface_hub

    head = {"main": "a" * 40, "v1": "b" * 40}
    loads: list[dict[str, Any]] = []

    def dataset_info(self: Any, repo_id: str, revision: str | None = None, **_: Any) -> Any:
        return huggingface_hub.hf_api.DatasetInfo(id=repo_id, sha=head[revision or "main"])

    def load_dataset(path: str, name: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        loads.append({"path": path, **kwargs})
        return [{"instruction": "Say 1", "input": "", "output": "1"}]

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    fingerprints = [acquire_frame(hub_request("org/chat", revision))[1].source_fingerprints for revision in ("", "v1")]
    head["main"] = "c" * 40
    fingerprints.append(acquire_frame(hub_request("org/chat"))[1].source_fingerprints)
    assert [load["revision"] for load in loads] == ["a" * 40, "b" * 40, "c" * 40]
    assert all(load["streaming"] is True and load["path"] == "org/chat" for load in loads)
    assert len({tuple(f) for f in fingerprints}) == 3
