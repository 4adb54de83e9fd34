"""Puts a local job's volumes where it asked, for its process only, then runs its command.

A job's command runs on this machine's file system, so ``/checkpoints`` would mean a directory of the
machine's own root. This helper gives the job a private view instead: in a new mount namespace (plus a
user namespace when not root, mapping the user to root there) it builds a root on a small tmpfs, in which
every entry of ``/`` is bound back in place (so the job sees the machine as before), adds each volume's
directory at its mount path (read-only when asked), moves into that root and ``exec``-s the command in the
job's working directory. Nothing of it is visible outside the job's processes, and it all goes when they
end; the command keeps the helper's pid (and so its process group).

**A user of its own** (run as root, the config has ``user``): the job then runs under that unprivileged
user id, so the kernel keeps it from every other process (the server's ``/proc/<pid>/environ``, another
job's environment and memory, signals), and in its view of the files:

- each entry of ``/`` is bound through an *idmapped* mount that shows root's files as the job user's and
  stores what the job writes as root's: the job reads and writes the machine as before (and what it
  leaves in a bucket stays the server's), ``/proc``, ``/sys`` and ``/dev`` excepted (bound as they are);
- the state directory (``hide``) is an empty tmpfs holding only the job's own directories (``keep``):
  no other job's log, record, secrets or working directory, no store, no bucket's real directory;
- a read-only volume is read-only at its mount *and* at its real path on the machine;
- ``/etc/passwd`` and ``/etc/group`` name the job's user (``getpass``, ``pwd`` work), and no exec gains
  privileges (``PR_SET_NO_NEW_PRIVS``: a set-user-id program runs as the job's user).

A ``user`` without ``uid`` (a plain user's server) gives the same view of the state directory and of
read-only volumes, in a user namespace where the job stays that user (its capabilities there end at the
exec), without idmapped mounts.

Standard library only, run as ``python -I -S mounts.py CONFIG -- COMMAND [ARG ...]`` (under the shim),
where CONFIG is a JSON file ``{"root", "workdir", "error_file", "mounts": [{"source", "target",
"readOnly"}], "user"?: {"uid", "gid", "hide", "keep": [PATH, ...], "passwd", "group"}}``. On failure it
prints why, writes it to ``error_file`` (the job's ``status.message``) and exits 125 (127 if the command
cannot be started). ``mounts.py --probe DIR`` checks the namespaces work; ``mounts.py --probe-user DIR``
that a job can have a user of its own here (root, idmapped mounts of DIR's file system).
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

#: The new mount API (Linux 5.12+ for idmapped mounts); the same numbers on every 64-bit architecture.
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC = 1, os.O_CLOEXEC
AT_FDCWD, AT_EMPTY_PATH, AT_RECURSIVE = -100, 0x1000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY, MOUNT_ATTR_IDMAP = 0x1, 0x00100000
PR_SET_NO_NEW_PRIVS = 38
#: The user id ``--probe-user`` maps root to (any unprivileged one).
PROBE_UID = 65534 + 1
#: Never idmapped (a job user must not own the machine's devices, processes or kernel settings).
NOT_IDMAPPED = frozenset({"proc", "sys", "dev"})

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.syscall.restype = ctypes.c_long


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]  # fmt: skip


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(_bytes(source), _bytes(target), _bytes(fstype), flags, _bytes(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{os.strerror(errno)} (mounting {source or fstype} at {target})")


def enter_namespaces(same_ids: bool = False) -> None:
    """A mount namespace of our own whose changes never propagate back (plus a user namespace if needed,
    where the user is root, or itself with ``same_ids``: its capabilities there end at the exec)."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | (CLONE_NEWUSER if uid != 0 else 0)
    if _libc.unshare(flags) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{os.strerror(errno)} (unshare{' with a user namespace' if uid else ''})")
    if uid != 0:
        inside_uid, inside_gid = (uid, gid) if same_ids else (0, 0)
        maps = (
            ("setgroups", "deny"),
            ("uid_map", f"{inside_uid} {uid} 1"),
            ("gid_map", f"{inside_gid} {gid} 1"),
        )
        for name, text in maps:
            with open(f"/proc/self/{name}", "w") as handle:
                handle.write(text)
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def _syscall(number: int, *args: object) -> int:
    # Whole registers: ctypes would pass a Python int to a variadic function as a C int.
    args = tuple(ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args)
    result = _libc.syscall(ctypes.c_long(number), *args)
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return result


def idmap_namespace(uid: int, gid: int) -> int:
    """A descriptor of a user namespace whose root is ``uid``/``gid`` outside: an idmapped mount with it
    shows files of root as ``uid``'s, and stores what ``uid`` creates as root's."""
    ready_read, ready_write = os.pipe()
    done_read, done_write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only holds the namespace open
        os.close(ready_read)
        os.close(done_write)
        ok = _libc.unshare(CLONE_NEWUSER) == 0
        os.write(ready_write, b"1" if ok else b"0")
        os.read(done_read, 1)
        os._exit(0)
    os.close(ready_write)
    os.close(done_read)
    try:
        if os.read(ready_read, 1) != b"1":
            raise OSError(1, "Could not make a user namespace for the job's user")
        for name, text in (("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/{child}/{name}", "w") as handle:
                handle.write(text)
        return os.open(f"/proc/{child}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_read)
        os.close(done_write)
        os.waitpid(child, 0)


def idmapped_bind(source: str, target: str, userns: int, read_only: bool = False) -> None:
    """Bind ``source`` (and what is mounted below it) at ``target`` through ``userns``'s id mapping
    (``OSError`` if a file system there cannot be idmapped)."""
    tree = _syscall(SYS_OPEN_TREE, AT_FDCWD, os.fsencode(source),
                    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)  # fmt: skip
    try:
        attr = MountAttr(
            attr_set=MOUNT_ATTR_IDMAP | (MOUNT_ATTR_RDONLY if read_only else 0), userns_fd=userns
        )
        _syscall(SYS_MOUNT_SETATTR, tree, b"", AT_EMPTY_PATH | AT_RECURSIVE, ctypes.byref(attr),
                 ctypes.sizeof(attr))  # fmt: skip
        _syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, os.fsencode(target), MOVE_MOUNT_F_EMPTY_PATH)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror} (idmapping {source} at {target})") from None
    finally:
        os.close(tree)


def plain_bind(source: str, target: str, read_only: bool) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        kept = os.statvfs(target).f_flag
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= sum(flag for st_flag, flag in KEPT_FLAGS.items() if kept & st_flag)
        mount(None, target, None, flags)


def bind(source: str, target: str, read_only: bool, userns: int | None) -> None:
    """Through the job user's id mapping if it has one and the file system allows it, else as it is."""
    if userns is not None:
        with contextlib.suppress(OSError):
            idmapped_bind(source, target, userns, read_only)
            return
    plain_bind(source, target, read_only)


def _within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def build_root(root: str, mounts: list[dict], user: dict | None = None, userns: int | None = None) -> None:
    """``root``: a tmpfs holding ``/``'s entries bound back, plus the volumes (see the module docstring
    for what a job with a ``user`` of its own sees instead)."""
    mount("tmpfs", root, "tmpfs", 0, "mode=0755")
    mount(None, root, None, MS_UNBINDABLE)  # so binding its parent (say /tmp) does not copy it inside
    with os.scandir("/") as entries:
        for entry in entries:
            here, there = entry.path, os.path.join(root, entry.name)
            if entry.is_symlink():
                os.symlink(os.readlink(here), there)
            elif entry.is_dir():
                os.mkdir(there)
                bind(here, there, False, None if entry.name in NOT_IDMAPPED else userns)
            elif entry.is_file():
                open(there, "w").close()
                mount(here, there, None, MS_BIND)
    if user is not None:
        hide_state_directory(root, user, userns)
    for volume in sorted(mounts, key=lambda item: item["target"].count("/")):
        target = root + volume["target"]
        os.makedirs(target, exist_ok=True)  # a new top-level directory: on the tmpfs, not the machine
        bind(volume["source"], target, volume["readOnly"], userns)
    if user is None:
        return
    for volume in mounts:  # read-only by every path: the real directory too (the state dir's is hidden)
        if volume["readOnly"] and not _within(volume["source"], user["hide"]):
            bind(volume["source"], root + volume["source"], True, userns)
    for name in ("passwd", "group"):
        if user.get(name) and os.path.isfile(root + f"/etc/{name}"):
            bind(user[name], root + f"/etc/{name}", True, userns)  # 0600 root's: the job user's there


def hide_state_directory(root: str, user: dict, userns: int | None) -> None:
    """The state directory as an empty tmpfs, with only the job's own directories bound back in place."""
    hidden = root + user["hide"]
    mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0711,size=64k")
    for path in user["keep"]:
        if not _within(path, user["hide"]):
            continue
        parent = os.path.dirname(root + path)
        os.makedirs(root + path, mode=0o700, exist_ok=True)
        for directory in (parent, *_ancestors(parent, hidden)):
            os.chmod(directory, 0o711)  # traversable, never listable
        bind(path, root + path, False, userns)


def _ancestors(path: str, stop: str) -> list[str]:
    found = []
    while _within(path, stop) and path != stop:
        path = os.path.dirname(path)
        found.append(path)
    return found


def drop_privileges(uid: int, gid: int) -> None:
    """Become the job's user for good: no supplementary groups, no capabilities, no exec gaining any."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{os.strerror(errno)} (PR_SET_NO_NEW_PRIVS)")


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


def probe_user(directory: str) -> int:
    """Whether a job can have a user of its own here: root, and ``directory``'s file system idmapped."""
    if os.geteuid() != 0:
        sys.stderr.write("the local Jobs server does not run as root: its jobs run as its own user\n")
        return 1
    try:
        enter_namespaces()
        userns = idmap_namespace(PROBE_UID, PROBE_UID)
        source, target = os.path.join(directory, "source"), os.path.join(directory, "target")
        os.makedirs(source, mode=0o700, exist_ok=True)
        os.makedirs(target, mode=0o700, exist_ok=True)
        idmapped_bind(source, target, userns)  # in this process's mount namespace only
        if os.stat(target).st_uid != PROBE_UID:
            raise OSError(0, "an idmapped mount did not show root's files as the job user's")
    except OSError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--probe"] and len(argv) == 2:
        return probe(argv[1])
    if argv[:1] == ["--probe-user"] and len(argv) == 2:
        return probe_user(argv[1])
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: mounts.py CONFIG -- COMMAND [ARG ...] | mounts.py --probe[-user] DIR\n")
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        config = json.load(handle)
    command, error_file, user = argv[2:], config.get("error_file"), config.get("user")
    what = "make the job's view of this machine" if user else "mount the job's volumes"
    errors: int | None = None

    def report(message: str, code: int) -> int:
        """Say why in the error file: through the descriptor opened before the job's view, if any."""
        if errors is None:
            return fail(error_file, message, code)
        sys.stderr.write(f"{message}\n")
        with contextlib.suppress(OSError):
            os.write(errors, message.encode())
        return code

    try:
        own_user = user is not None and "uid" in user  # else: a plain user's job, that user still
        enter_namespaces(same_ids=user is not None and not own_user)
        userns = idmap_namespace(user["uid"], user["gid"]) if own_user else None
        build_root(config["root"], config["mounts"], user, userns)
        # A job's user cannot reach it once in its view: opened now, where an exec failure is said.
        if user is not None and error_file is not None:
            errors = os.open(error_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        os.chroot(config["root"])
        os.chdir(config["workdir"])
        if userns is not None:
            os.close(userns)
        if own_user:
            drop_privileges(user["uid"], user["gid"])
    except OSError as exc:
        return report(f"Could not {what}: {exc}", 125)
    if errors is None and error_file:
        with contextlib.suppress(OSError):
            os.unlink(error_file)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        return report(f"Could not start {command[0]!r}: {exc.strerror or exc}", 127)
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
