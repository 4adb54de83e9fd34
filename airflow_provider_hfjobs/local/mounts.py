"""Puts a local job's volumes where it asked, for its process only, then runs its command.

A job's command runs on this machine's file system, so ``/checkpoints`` would mean a directory of the
machine's own root. This helper gives the job a private view instead: in a new mount namespace (plus a
user namespace when not root, mapping the user to root there) it builds a root on a small tmpfs, in which
every entry of ``/`` is bound back in place (so the job sees the machine as before), adds each volume's
directory at its mount path (read-only when asked), moves into that root and ``exec``-s the command in the
job's working directory. Nothing of it is visible outside the job's processes, and it all goes when they
end; the command keeps the helper's pid (and so its process group).

Standard library only, run as ``python -I -S mounts.py CONFIG -- COMMAND [ARG ...]`` (under the shim),
where CONFIG is a JSON file ``{"root", "workdir", "error_file", "mounts": [{"source", "target",
"readOnly"}]}``. On failure it prints why, writes it to ``error_file`` (the job's ``status.message``) and
exits 125 (127 if the command cannot be started). ``mounts.py --probe DIR`` checks the namespaces work.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC = 32, 1024, 2048, 4096, 16384
MS_UNBINDABLE, MS_PRIVATE, MS_RELATIME = 1 << 17, 1 << 18, 1 << 21
#: statvfs flags to keep on a read-only remount (a user namespace may not drop them) -> mount flags.
KEPT_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{os.strerror(errno)} (mounting {source or fstype} at {target})")


def enter_namespaces() -> None:
    """A mount namespace of our own whose changes never propagate back (plus a user namespace if needed)."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | (CLONE_NEWUSER if uid != 0 else 0)
    if _libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{os.strerror(errno)} (unshare{' with a user namespace' if uid else ''})")
    if uid != 0:
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def build_root(root: str, mounts: list[dict]) -> None:
    """``root``: a tmpfs holding ``/``'s entries bound back, plus the volumes."""
    mount("tmpfs", root, "tmpfs", 0, "mode=0755")
    mount(None, root, None, MS_UNBINDABLE)  # so binding its parent (say /tmp) does not copy it inside
    with os.scandir("/") as entries:
        for entry in entries:
            here, there = entry.path, os.path.join(root, entry.name)
            if entry.is_symlink():
                os.symlink(os.readlink(here), there)
            elif entry.is_dir():
                os.mkdir(there)
                mount(here, there, None, MS_BIND | MS_REC)
            elif entry.is_file():
                open(there, "w").close()
                mount(here, there, None, MS_BIND)
    for volume in sorted(mounts, key=lambda item: item["target"].count("/")):
        target = root + volume["target"]
        os.makedirs(target, exist_ok=True)  # a new top-level directory: on the tmpfs, not the machine
        mount(volume["source"], target, None, MS_BIND | MS_REC)
        if volume["readOnly"]:
            kept = os.statvfs(target).f_flag
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY
            flags |= sum(flag for st_flag, flag in KEPT_FLAGS.items() if kept & st_flag)
            mount(None, target, None, flags)


def fail(error_file: str | None, message: str, code: int) -> int:
    sys.stderr.write(f"{message}\n")
    if error_file:
        try:
            with open(error_file, "w", encoding="utf-8") as handle:
                handle.write(message)
        except OSError:
            pass
    return code


def probe(directory: str) -> int:
    try:
        enter_namespaces()
        mount("tmpfs", directory, "tmpfs", 0, "mode=0700")
    except OSError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"] and len(argv) == 2:
        return probe(argv[1])
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: mounts.py CONFIG -- COMMAND [ARG ...] | mounts.py --probe DIR\n")
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        config = json.load(handle)
    command, error_file = argv[2:], config.get("error_file")
    try:
        enter_namespaces()
        build_root(config["root"], config["mounts"])
        os.chroot(config["root"])
        os.chdir(config["workdir"])
    except OSError as exc:
        return fail(error_file, f"Could not mount the job's volumes: {exc}", 125)
    if error_file:
        with contextlib.suppress(OSError):
            os.unlink(error_file)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        return fail(error_file, f"Could not start {command[0]!r}: {exc.strerror or exc}", 127)
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
