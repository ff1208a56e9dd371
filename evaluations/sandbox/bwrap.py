"""The bubblewrap command line, the tools it needs, and killing a sandbox (parent side).

Isolation (bubblewrap, Debian package `bubblewrap`; scripts/install.sh installs it as root):
- `bwrap` with its own user, pid, network, ipc, uts and cgroup namespaces; nested user namespaces
  disabled; a new session (no TIOCSTI into our terminal); killed when its parent dies.
- Filesystem: /usr (+ the merged-/usr symlinks) and the interpreter's prefix read-only, a fresh
  /proc and a read-only /dev, and a fresh tmpfs at /tmp (the working dir, capped at
  `max_file_mb` in total). Nothing else of the host is mounted (no /etc, /home, /root, /work,
  no project runs/, no ~/.cache), and the root is remounted read-only.
- Environment: built from the allow-list `harness.ENV`; nothing of ours (HF_TOKEN, AWS_*,
  MLFLOW_*, ...) is passed, and the harness refuses to run if any other variable shows up.
- Limits (`Limits`), set by the harness on itself before the candidate runs, so every process the
  candidate starts inherits them: RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE, no cores.
  RLIMIT_NPROC does not apply to kernel uid 0, so as root we start bwrap as uid 65534 (nobody):
  the sandbox then runs as a non-root kernel uid in a fresh user namespace, and the process count
  is per sandbox (the limit is set inside the namespace; the outer count stays unlimited), so
  parallel sandboxes do not starve each other.
- Wall clock: past `wall_seconds` the parent SIGKILLs bwrap's process group and every process in
  the sandbox's tree (`kill`); killing the pid namespace's init kills whatever was forked later.
- Interpreter: ours if the sandbox uid can reach it, else /usr(/local)/bin/pythonX.Y of the same
  X.Y (checked on every run), or $POSTTRAIN_SANDBOX_PYTHON; run with -I -S (stdlib only).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass

from evaluations.sandbox import harness
from evaluations.sandbox.harness import ENV, SANDBOX_UID, WORKDIR
from evaluations.sandbox.results import Limits, SandboxUnavailable

BWRAP_ENV = "POSTTRAIN_BWRAP"  # path of bwrap; default: `bwrap` on PATH
PYTHON_ENV = "POSTTRAIN_SANDBOX_PYTHON"  # interpreter inside the sandbox; default: see find_python


@dataclass(frozen=True)
class Tools:
    bwrap: str
    python: str  # interpreter inside the sandbox (same major.minor as ours; checked every run)

    def argv(self, limits: Limits) -> list[str]:
        prefix = os.path.dirname(os.path.dirname(self.python))
        argv = [self.bwrap,
                "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
                "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv",
                "--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/lib", "/lib64", "/sbin"):  # merged-/usr symlinks, or real dirs on older systems
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        if prefix != "/usr" and not prefix.startswith("/usr/"):
            argv += ["--ro-bind", prefix, prefix]
        argv += ["--proc", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
                 "--size", str(limits.max_file_mb << 20), "--tmpfs", WORKDIR, "--chdir", WORKDIR,
                 "--remount-ro", "/"]
        for key, value in ENV.items():
            argv += ["--setenv", key, value]
        # -I: ignore PYTHON* variables, user site and the cwd on sys.path; -S: no site-packages.
        return argv + [self.python, "-I", "-S", "-c", harness_source(), "--harness"]


def harness_source() -> str:
    """harness.py's text, run with `-c` inside the sandbox (no project on its sys.path)."""
    with open(harness.__file__, encoding="utf-8") as f:
        return f.read()


def find_bwrap() -> str:
    path = os.environ.get(BWRAP_ENV) or shutil.which("bwrap")
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        where = f"{BWRAP_ENV}={path}" if os.environ.get(BWRAP_ENV) else "no `bwrap` on PATH"
        raise SandboxUnavailable(
            f"bubblewrap not found ({where}); model-generated code is never run unsandboxed. "
            "Install it with `apt-get install -y bubblewrap` (scripts/install.sh does this as root).")
    return path


def find_python() -> str:
    """The sandbox's interpreter: $POSTTRAIN_SANDBOX_PYTHON, else ours, else /usr(/local)/bin/pythonX.Y.

    Ours is skipped when the sandbox uid cannot reach it (e.g. pyenv under /root, mode 0700):
    bwrap resolves bind sources as that uid.
    """
    override = os.environ.get(PYTHON_ENV)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [override] if override else [sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"]
    for path in candidates:
        real = os.path.realpath(path)
        if os.path.isfile(real) and _reachable_by_sandbox(real):
            return real
    raise SandboxUnavailable(
        f"no {version} interpreter the sandbox uid can execute among {candidates}; set {PYTHON_ENV} "
        f"to one whose directories are world-searchable (e.g. apt-get install -y {version})")


def _reachable_by_sandbox(path: str) -> bool:
    if os.geteuid() != 0:  # the sandbox maps to our own uid
        return os.access(path, os.X_OK)
    parts = path.split("/")
    dirs = ["/".join(parts[:i]) or "/" for i in range(1, len(parts))]
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in dirs) and bool(os.stat(path).st_mode & stat.S_IXOTH)


def drop_privileges() -> dict:
    """Popen keywords: as root, bwrap itself runs as nobody (no groups, no capabilities): see SANDBOX_UID."""
    return {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []} if os.geteuid() == 0 else {}


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL bwrap's process group and its whole tree; wait until they are gone (no orphans)."""
    import psutil  # parent side only: the in-sandbox harness has the stdlib alone

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # already gone
        pass
    for p in tree:  # the pid namespace's init among them: its death kills what was forked since
        try:
            p.kill()
        except psutil.NoSuchProcess:
            continue
    proc.wait()

    def running(p: psutil.Process) -> bool:  # zombies are dead; host init reaps the orphaned ones later
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 10.0  # SIGKILL is not instant for a process stuck in the kernel
    while any(running(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.01)
