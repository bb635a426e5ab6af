"""The Gradio Space: the folder `llmft serve space` writes, launched as a Space would launch it (`python app.py`, in a
venv that an isolated pip built from the folder's requirements.txt and PyPI alone, as the Hub builds it), and used
from headless Chromium (Debian's chromium and chromium-driver): type a message, watch the answer stream in, press
stop, leave. The screenshot is kept under $LLMFT_TEST_ARTIFACTS (scripts/test.sh sets it to dist/test-artifacts)."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmft.proto.serve.v1 import serve_pb2 as S
from llmft.serve.__main__ import main
from llmft.serve.generator import Generator
from llmft.serve.server import ServerOptions, build_server

MESSAGE = "What does a Flyte task do?"
MAX_NEW_TOKENS = 120


@pytest.fixture(scope="module")
def expected_answer(model_dir: Path) -> str:
    generator = Generator(model_dir, max_batch=1, max_queue=0)
    try:
        request = S.GenerateRequest(
            messages=[S.ChatMessage(role="user", content=MESSAGE)],
            generation=S.GenerationConfig(max_new_tokens=MAX_NEW_TOKENS),
        )
        return generator.generate(request).text.strip()
    finally:
        generator.close()


PYPI = "https://pypi.org/simple"


def isolated_pip(python: Path, *args: str) -> None:
    """pip as the Hub's Space builder runs it: no config file, no environment variables, PyPI as the only index. Only
    the machine's CA bundle is passed on (`--cert`: how TLS is checked here, not what resolves), for networks whose
    proxy signs with its own certificate."""
    command = [str(python), "-m", "pip", "--isolated", "--disable-pip-version-check", "install", "--quiet"]
    bundles = (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt")
    cert: list[str] = next((["--cert", b] for b in bundles if b and Path(b).is_file()), [])
    done = subprocess.run([*command, *cert, "--index-url", PYPI, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def space_python(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """The Python of a venv holding only what a Space folder's requirements.txt installs. Its requirements must resolve
    from PyPI alone (checked by a dry run for the model and the gRPC backends; torch without a local label). The venv
    itself takes torch's CPU wheel from the machine's find-links folder where there is one: the same version, and the
    file a Space's CPU index line would give, instead of PyPI's multi-GB CUDA build."""
    from llmft.serve.space import SpaceSettings, write_space

    folder = tmp_path_factory.mktemp("space-venv")
    local = write_space(folder / "local", SpaceSettings(model=str(model_dir)), adapter=True)
    remote = write_space(folder / "remote", SpaceSettings(grpc_target="127.0.0.1:50051"))
    assert "+" not in (local / "requirements.txt").read_text()
    venv = folder / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    for space in (local, remote):
        isolated_pip(python, "--dry-run", "--ignore-installed", "-r", str(space / "requirements.txt"))
    find_links = [a for link in os.environ.get("PIP_FIND_LINKS", "").split() for a in ("--find-links", link)]
    # Both backends' requirements in one venv (the same gradio pin), so each Space runs from its own folder in it.
    isolated_pip(python, *find_links, "-r", str(local / "requirements.txt"), "-r", str(remote / "requirements.txt"))
    # Nothing of llmft is in it: the app runs from the Space folder alone (the gRPC one with the proto modules the
    # folder carries).
    assert subprocess.run([str(python), "-c", "import llmft"], capture_output=True).returncode != 0
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def space_app(space: Path, env: dict[str, str], python: Path | None = None) -> Iterator[str]:
    """Runs the Space folder as a Space does (`python app.py`, with `python`: the Space venv's, or this one's) and
    yields its URL once it listens."""
    port = free_port()
    environment = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        **env,
    }
    log = space.parent / f"{space.name}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(python or sys.executable), "app.py"], cwd=space, env=environment, stdout=output, stderr=output
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError(f"app.py exited {process.returncode}: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"app.py did not listen within 120 s: {log.read_text()}") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)


def chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


# Records every text the last bot message shows, so the test sees the answer grow.
OBSERVE = """
window.__seen = [];
const record = () => {
  const bots = document.querySelectorAll('[data-testid="bot"]');
  if (bots.length) { const t = bots[bots.length - 1].innerText; if (window.__seen.at(-1) !== t) window.__seen.push(t); }
};
new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
"""


def chat_in_browser(url: str, artifact: Path) -> list[str]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium()
    try:
        driver.get(url)  # type: ignore[attr-defined]
        wait = WebDriverWait(driver, 60)
        box = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "textarea")))
        driver.execute_script(OBSERVE)  # type: ignore[attr-defined]
        box.send_keys(MESSAGE)
        box.send_keys(Keys.ENTER)
        # Done when the answer has stopped changing for a second.
        seen: list[str] = []
        stable_since = time.monotonic()
        end = time.monotonic() + 90
        while time.monotonic() < end:
            now = driver.execute_script("return window.__seen")  # type: ignore[attr-defined]
            if now != seen:
                seen, stable_since = now, time.monotonic()
            elif seen and time.monotonic() - stable_since > 1.5:
                break
            time.sleep(0.1)
        artifact.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(artifact))  # type: ignore[attr-defined]
        return seen
    finally:
        driver.quit()  # type: ignore[attr-defined]


def artifacts() -> Path:
    return Path(os.environ.get("LLMFT_TEST_ARTIFACTS") or Path(os.environ.get("TMPDIR", "/tmp")) / "llmft-artifacts")


def check_streamed(seen: list[str], expected: str) -> None:
    texts = [t.strip() for t in seen if t.strip()]
    assert texts, "no answer appeared"
    assert texts[-1] == expected
    # Streamed: the answer showed up in several growing pieces before the whole of it.
    partial = [t for t in texts[:-1] if expected.startswith(t) and len(t) < len(expected)]
    assert len(partial) >= 2, texts


def test_space_folder_runs_in_a_browser_and_streams(
    model_dir: Path, tmp_path: Path, expected_answer: str, space_python: Path
) -> None:
    space = tmp_path / "space"
    assert (
        main(
            ["space", "--model", str(model_dir), "--out", str(space), "--title", "tiny chat",
             "--max-new-tokens", str(MAX_NEW_TOKENS)]
        )
        == 0
    )  # fmt: skip
    readme = (space / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(readme.split("---")[1])
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py" and front["sdk_version"]
    requirements = (space / "requirements.txt").read_text().split()
    assert any(r.startswith("gradio==") for r in requirements) and any(
        r.startswith("transformers==") for r in requirements
    )
    assert json.loads((space / "space_config.json").read_text())["model"] == str(model_dir)
    with space_app(space, {}, space_python) as url:
        seen = chat_in_browser(url, artifacts() / "space_chat.png")
    check_streamed(seen, expected_answer)
    assert (artifacts() / "space_chat.png").stat().st_size > 10_000


def test_space_calls_the_grpc_service(
    model_dir: Path, tmp_path: Path, expected_answer: str, space_python: Path
) -> None:
    running = build_server(model_dir, ServerOptions(port=0, token="space-token"))
    space = tmp_path / "space"
    try:
        assert main(["space", "--grpc-target", f"127.0.0.1:{running.port}", "--out", str(space),
                     "--max-new-tokens", str(MAX_NEW_TOKENS)]) == 0  # fmt: skip
        assert (space / "llmft" / "proto" / "serve" / "v1" / "serve_pb2_grpc.py").is_file()
        assert "grpcio" in (space / "requirements.txt").read_text()

        def answered() -> int:
            return sum(running.generator.engine.stats().finished.get(r, 0) for r in ("stop", "length"))

        before = answered()
        with space_app(space, {"LLMFT_GRPC_TOKEN": "space-token"}, space_python) as url:
            seen = chat_in_browser(url, artifacts() / "space_chat_grpc.png")
        check_streamed(seen, expected_answer)
        assert answered() == before + 1  # the answer came from the service
    finally:
        running.stop(grace=None)


def test_a_written_space_is_pointed_at_a_local_model_and_keeps_the_rest(tmp_path: Path) -> None:
    """What a local run does with the Space folder it keeps: the app loads the run's model folder instead of the Hub
    repo it was written for; every other setting stays, and no staging file is left behind."""
    from llmft.serve.space import SpaceSettings, load_local_model, write_space

    space = write_space(tmp_path / "space", SpaceSettings(model="someone/chat-model", title="chat", temperature=0.5))
    before = json.loads((space / "space_config.json").read_text())
    assert before["model"] == "someone/chat-model"
    (tmp_path / "runs" / "model").mkdir(parents=True)
    load_local_model(space, tmp_path / "runs" / "model")
    after = json.loads((space / "space_config.json").read_text())
    assert after == {**before, "model": str((tmp_path / "runs" / "model").resolve())}
    assert sorted(p.name for p in space.iterdir()) == ["README.md", "app.py", "requirements.txt", "space_config.json"]


def test_generation_stops_when_the_visitor_presses_stop_or_leaves(
    model_dir: Path, tmp_path: Path, space_python: Path
) -> None:
    """A 1,000-token answer in the Space: the visitor presses stop while it streams, then asks again and closes the
    page. Each time the model stops within a step (the app's log says after how many tokens) instead of generating to
    the end for nobody."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    budget = 1000
    space = tmp_path / "space"
    assert main(["space", "--model", str(model_dir), "--out", str(space), "--max-new-tokens", str(budget)]) == 0
    log = tmp_path / "space.log"  # space_app's log of app.py

    def answers() -> list[tuple[int, bool]]:
        pattern = rf"answered with (\d+) of at most {budget} tokens( \(cut short)?"
        return [(int(tokens), bool(cut)) for tokens, cut in re.findall(pattern, log.read_text())]

    def until(condition: Any, seconds: float = 60.0) -> None:
        end = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < end, log.read_text()[-2000:]
            time.sleep(0.1)

    with space_app(space, {}, space_python) as url:
        driver = chromium()
        try:
            driver.get(url)  # type: ignore[attr-defined]
            box = WebDriverWait(driver, 60).until(EC.element_to_be_clickable((By.CSS_SELECTOR, "textarea")))
            driver.execute_script(OBSERVE)  # type: ignore[attr-defined]

            def shown() -> int:
                return len(driver.execute_script("return window.__seen"))  # type: ignore[attr-defined]

            box.send_keys(MESSAGE + Keys.ENTER)
            until(lambda: shown() >= 3)  # the answer is streaming
            driver.find_element(By.CSS_SELECTOR, "[data-testid='stop-button']").click()  # type: ignore[attr-defined]
            until(lambda: len(answers()) == 1)
            stopped_at = shown()
            time.sleep(1.0)
            assert shown() == stopped_at  # nothing more reaches the page either
            box.send_keys("And a Flyte workflow?" + Keys.ENTER)
            until(lambda: shown() >= stopped_at + 3)
        finally:
            driver.quit()  # type: ignore[attr-defined]  # the second time: the visitor leaves mid-answer
        until(lambda: len(answers()) == 2)
    assert [cut for _, cut in answers()] == [True, True], answers()
    assert all(tokens < budget for tokens, _ in answers()), answers()
