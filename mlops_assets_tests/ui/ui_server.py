"""Start and stop a real ``dagster dev`` on 127.0.0.1 for the browser test, and talk GraphQL to it.

``dagster dev`` started from a non-interactive parent can inherit SIGINT and SIGTERM as ignored,
and then shrugs off ``kill -TERM`` (STACK.md §10). It is therefore started through a tiny
wrapper that puts both signals back to their defaults before it execs, in a session of its own;
stopping it sends SIGTERM to its PID, waits, and ends by PID any child that outlives it.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Reset the two signals, then become the real command (argv[1:]).
_WRAPPER = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGTERM, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class GraphQLError(RuntimeError):
    pass


class DagsterDev:
    """One ``dagster dev -w workspace.yaml -h 127.0.0.1 -p <port>`` process tree."""

    def __init__(self, project_root: Path, env: dict[str, str], log_path: Path, port: int | None = None):
        self.project_root = project_root
        self.env = env
        self.log_path = log_path
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.leftovers: list[int] = []  # children that had to be killed after the parent stopped

    def start(self) -> None:
        dagster = str(Path(sys.executable).parent / "dagster")
        cmd = [sys.executable, "-c", _WRAPPER, dagster, "dev", "-w", "workspace.yaml",
               "-h", "127.0.0.1", "-p", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.project_root, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 240) -> float:
        """Wait for ``/server_info`` and for the code location to load; return the seconds taken."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev not ready after {timeout} s:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/server_info", timeout=5) as resp:
                    info = json.load(resp)
                if "dagster_webserver_version" in info:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        while True:
            entries = self.gql("""{ workspaceOrError { __typename ... on Workspace { locationEntries {
                name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }""")
            entries = entries["workspaceOrError"].get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    raise RuntimeError(f"code location failed to load: {errors}")
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise RuntimeError(f"code location not loaded after {timeout} s: {entries}")
            time.sleep(0.5)

    def gql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.base}/graphql", data=body,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                answer = json.load(resp)
        except urllib.error.HTTPError as e:
            raise GraphQLError(f"HTTP {e.code}: {e.read()[:2000]!r}") from None
        if answer.get("errors"):
            raise GraphQLError(json.dumps(answer["errors"])[:2000])
        return answer["data"]

    def stop(self, grace: float = 30) -> None:
        """SIGTERM to the PID, then SIGKILL, by PID, whatever of its tree is still there."""
        if self.proc is None:
            return
        tree = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Children get a moment to follow their parent out.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in tree):
            time.sleep(0.2)
        for pid in tree + descendants(self.proc.pid):
            if _alive(pid):
                self.leftovers.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.proc = None
