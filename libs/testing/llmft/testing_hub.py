"""A local stand-in for the Hugging Face Hub's HTTP API, for offline tests of the real huggingface_hub client (point
it here with HF_ENDPOINT). It implements the endpoints that creating repos, committing files and downloading
snapshots call:

    POST /api/repos/create                                   create a model or Space repo (409 when it exists)
    POST /api/{models|spaces}/{repo}/preupload/{revision}    small files go inline ("regular"); large ones and weights
                                                             (over 10 MiB, or *.safetensors, *.bin, ...) by LFS
    POST /{repo}.git/info/lfs/objects/batch, /spaces/...     the LFS batch API: where to PUT each object
    PUT  /lfs-objects/{sha256}                               an LFS object's bytes (checked against its sha256)
    POST /api/{models|spaces}/{repo}/commit/{revision}       NDJSON: header, files (base64), LFS files (by oid),
                                                             deleted files
    GET  /api/{models|spaces}/{repo}[/revision/{revision}]   repo info with its files (siblings)
    GET  /api/{models|spaces}/{repo}/tree/{revision}         the files of the head commit
    GET  /api/whoami-v2                                      the token's user
    POST /api/validate-yaml                                  a README's front matter: YAML, and a Space's sdk
    HEAD|GET /{repo}/resolve/{revision}/{path}, /spaces/{repo}/resolve/...   a file with its commit and ETag

This is the Hub's legacy LFS protocol, which huggingface_hub speaks when hf_xet is absent or HF_HUB_DISABLE_XET is
set (tests set it; the Xet protocol needs the Hub's content-addressed store). Repos live in memory. Write calls need
`Authorization: Bearer <token>` with the server's token; every request is recorded (method, path, whether it was
authorised), so a test can check what the client did."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Repo:
    kind: str  # "model" or "space"
    repo_id: str
    private: bool
    sdk: str = ""
    commits: list[tuple[str, str, dict[str, bytes]]] = field(default_factory=list)  # (oid, message, files)
    lfs_paths: set[str] = field(default_factory=set)  # files that were ever committed through LFS

    @property
    def head(self) -> tuple[str, dict[str, bytes]]:
        if not self.commits:
            return "0" * 40, {}
        oid, _, files = self.commits[-1]
        return oid, files


# The real Hub's defaults: a repo's .gitattributes tracks weights and archives by LFS, and any file over 10 MiB goes by
# LFS whatever its name.
LFS_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth", ".ckpt", ".h5", ".onnx", ".parquet", ".arrow", ".zip")
LFS_THRESHOLD = 10 * 1024 * 1024


def lfs_file(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size > LFS_THRESHOLD


@dataclass
class Request:
    method: str
    path: str
    authorised: bool
    status: int


class LocalHub:
    """Start with `with LocalHub(token) as hub:`; `hub.endpoint` is the URL for HF_ENDPOINT."""

    def __init__(self, token: str, user: str = "llmft-tester") -> None:
        self.token = token
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self.lfs: dict[str, bytes] = {}  # LFS objects by sha256
        self.lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read hub.requests instead
                pass

            def do_HEAD(self) -> None:
                hub.handle(self, "HEAD")

            def do_GET(self) -> None:
                hub.handle(self, "GET")

            def do_POST(self) -> None:
                hub.handle(self, "POST")

            def do_PUT(self) -> None:
                hub.handle(self, "PUT")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def files(self, kind: str, repo_id: str) -> dict[str, bytes]:
        return dict(self.repos[(kind, repo_id)].head[1])

    # ------------------------------------------------------------------ dispatch

    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(url.path)
        authorised = h.headers.get("authorization", "") == f"Bearer {self.token}"
        if h.headers.get("transfer-encoding", "").lower() == "chunked":
            body = self.read_chunked(h)
        else:
            length = int(h.headers.get("content-length") or 0)
            body = h.rfile.read(length) if length else b""
        status, headers, payload = self.route(method, path, body, authorised)
        with self.lock:
            self.requests.append(Request(method, path, authorised, status))
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("content-length", str(len(payload)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(payload)

    @staticmethod
    def read_chunked(h: BaseHTTPRequestHandler) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                h.rfile.readline()
                return b"".join(chunks)
            chunks.append(h.rfile.read(size))
            h.rfile.readline()

    def route(self, method: str, path: str, body: bytes, authorised: bool) -> tuple[int, dict[str, str], bytes]:
        parts = [p for p in path.split("/") if p]
        if parts[-4:] == ["info", "lfs", "objects", "batch"] and method == "POST":
            kind = "space" if parts[0] == "spaces" else "model"
            repo_id = "/".join(parts[1:-4] if kind == "space" else parts[:-4]).removesuffix(".git")
            if (kind, repo_id) not in self.repos:
                return self.error(404, f"Repository not found: {repo_id}", {"x-error-code": "RepoNotFound"})
            if not authorised:
                return self.error(401, "Invalid credentials in Authorization header")
            return self.lfs_batch(json.loads(body))
        if parts[:1] == ["lfs-objects"] and method == "PUT" and len(parts) == 2:
            if hashlib.sha256(body).hexdigest() != parts[1]:
                return self.error(400, f"LFS object {parts[1]}: its content has another sha256")
            with self.lock:
                self.lfs[parts[1]] = body
            return 200, {"etag": '"' + parts[1] + '"'}, b""
        if parts[:2] == ["api", "whoami-v2"]:
            if not authorised:
                return self.error(401, "Invalid credentials in Authorization header")
            return self.json({"type": "user", "name": self.user, "auth": {"accessToken": {"role": "write"}}})
        if parts[:2] == ["api", "validate-yaml"] and method == "POST":
            return self.validate_yaml(json.loads(body))
        if parts[:3] == ["api", "repos", "create"] and method == "POST":
            return self.create(json.loads(body or b"{}"), authorised)
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in ("models", "spaces"):
            kind = parts[1][:-1]
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            repo = self.repos.get((kind, repo_id))
            if repo is None or (repo.private and not authorised):
                return self.error(404, f"Repository not found: {repo_id}", {"x-error-code": "RepoNotFound"})
            if rest and rest[0] == "preupload" and method == "POST":
                return self.preupload(json.loads(body))
            if rest and rest[0] == "commit" and method == "POST":
                if not authorised:
                    return self.error(401, "Invalid credentials in Authorization header")
                return self.commit(repo, body)
            if not rest or rest[0] == "revision":
                return self.info(repo)
            if rest[0] == "tree" and method == "GET":
                _, files = repo.head
                return self.json(
                    [
                        {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in sorted(files.items())
                    ]
                )
        if method in ("GET", "HEAD") and "resolve" in parts:
            at = parts.index("resolve")
            kind = "space" if parts[0] == "spaces" else "model"
            repo_id = "/".join(parts[1:at] if kind == "space" else parts[:at])
            repo = self.repos.get((kind, repo_id))
            if repo is None or (repo.private and not authorised):
                return self.error(404, f"Repository not found: {repo_id}", {"x-error-code": "RepoNotFound"})
            oid, files = repo.head
            name = "/".join(parts[at + 2 :])
            if name not in files:
                return self.error(404, f"Entry not found: {name}", {"x-error-code": "EntryNotFound"})
            data = files[name]
            etag = '"' + hashlib.sha1(data).hexdigest() + '"'
            return 200, {"x-repo-commit": oid, "etag": etag, "content-type": "application/octet-stream"}, data
        return self.error(404, f"not implemented by the local hub: {method} {path}")

    # ------------------------------------------------------------------ endpoints

    def json(self, value: Any, status: int = 200) -> tuple[int, dict[str, str], bytes]:
        return status, {"content-type": "application/json"}, json.dumps(value).encode()

    def error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return (
            status,
            {"content-type": "application/json", "x-error-message": message, **(headers or {})},
            (json.dumps({"error": message}).encode()),
        )

    def create(self, payload: dict[str, Any], authorised: bool) -> tuple[int, dict[str, str], bytes]:
        if not authorised:
            return self.error(401, "Invalid credentials in Authorization header")
        kind = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.user}/{payload['name']}"
        url = f"{self.endpoint}/{'spaces/' if kind == 'space' else ''}{repo_id}"
        with self.lock:
            if (kind, repo_id) in self.repos:  # the Hub answers 409 with the repo's url
                body = json.dumps({"error": "You already created this repo", "url": url}).encode()
                return 409, {"content-type": "application/json", "x-error-code": "RepoExists"}, body
            self.repos[(kind, repo_id)] = Repo(
                kind,
                repo_id,
                payload.get("visibility") == "private" or bool(payload.get("private")),
                payload.get("sdk", ""),
            )
        return self.json({"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        import yaml

        content = payload.get("content", "")
        errors = []
        if content.startswith("---"):
            try:
                meta = yaml.safe_load(content.split("---")[1])
            except yaml.YAMLError as error:
                meta, errors = None, [{"message": f"invalid YAML: {error}"}]
            if not errors and not isinstance(meta, dict):
                errors.append({"message": "metadata must be a mapping"})
            elif not errors and payload.get("repoType") == "space":
                if meta.get("sdk") not in ("gradio", "docker", "static", "streamlit"):
                    errors.append({"message": f"sdk: {meta.get('sdk')!r} is not a Space SDK"})
                if meta.get("sdk") == "gradio" and not isinstance(meta.get("sdk_version"), str):
                    errors.append({"message": "sdk_version: a gradio Space needs one"})
        return self.json({"errors": errors, "warnings": []}, status=400 if errors else 200)

    def preupload(self, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        files = [
            {
                "path": f["path"],
                "uploadMode": "lfs" if lfs_file(f["path"], f["size"]) else "regular",
                "shouldIgnore": False,
            }
            for f in payload["files"]
        ]
        return self.json({"files": files, "commitOid": "0" * 40})

    def lfs_batch(self, payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Where to upload each object: a PUT to this server (none for an object it already holds)."""
        objects = []
        for item in payload.get("objects", []):
            entry: dict[str, Any] = {"oid": item["oid"], "size": item["size"]}
            if item["oid"] not in self.lfs:
                entry["actions"] = {"upload": {"href": f"{self.endpoint}/lfs-objects/{item['oid']}"}}
            objects.append(entry)
        return self.json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def commit(self, repo: Repo, body: bytes) -> tuple[int, dict[str, str], bytes]:
        _, current = repo.head
        files = dict(current)
        message = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            key, value = entry["key"], entry["value"]
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                content = value["content"]
                files[value["path"]] = (
                    base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                )
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    return self.error(400, f"commit: {value['path']}: LFS object {value['oid']} was never uploaded")
                files[value["path"]] = self.lfs[value["oid"]]
                repo.lfs_paths.add(value["path"])
            elif key in ("deletedFile", "deletedFolder"):
                prefix = value["path"]
                files = {k: v for k, v in files.items() if k != prefix and not k.startswith(prefix.rstrip("/") + "/")}
            else:
                return self.error(400, f"commit: the local hub does not take {key!r} entries")
        oid = hashlib.sha1(json.dumps([repo.repo_id, len(repo.commits), sorted(files)]).encode()).hexdigest()
        with self.lock:
            repo.commits.append((oid, message, files))
        prefix = "spaces/" if repo.kind == "space" else ""
        return self.json({"commitUrl": f"{self.endpoint}/{prefix}{repo.repo_id}/commit/{oid}", "commitOid": oid})

    def info(self, repo: Repo) -> tuple[int, dict[str, str], bytes]:
        oid, files = repo.head
        return self.json(
            {
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "sha": oid,
                "private": repo.private,
                "sdk": repo.sdk or None,
                "siblings": [{"rfilename": name, "size": len(data)} for name, data in sorted(files.items())],
                "tags": [],
            }
        )
