"""Writing files so that a crash or a full disk never leaves a broken one behind.

Every file the zoo and its commands write for later reading (checkpoints,
presets, manifests, history, pictures) goes through `atomic_path`: the data is
written to a temporary name in the same folder and renamed over the target
only once complete. `os.replace` is atomic on POSIX and Windows, so the target
is always either the previous good file or the new complete one.
"""

import contextlib
import os
import pathlib
import re
import shutil
import socket

TMP_PREFIX = ".tmp-"
"""Prefix of in-progress files; readers such as `trainers.runs` ignore them."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path beside `path`; renames it onto `path` on success.

    On any exception the temporary file (or folder) is removed and `path` is
    left as it was.

    Args:
        path: str or PathLike. The final file.

    Yields:
        pathlib.Path. Where to write. It keeps `path`'s suffix, because some
        writers choose the format from it (`.keras`, `.png`).

    Example:
    >>> import pathlib, tempfile
    >>> from zoo.atomic import atomic_path
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "notes.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("complete")
    >>> target.read_text()
    'complete'
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes `text` to `path` atomically (see `atomic_path`)."""
    path = pathlib.Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def remove_stale(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Removes the in-progress files a killed process left in `folder`.

    Only for a folder no other process is writing to (a run folder as its
    command starts). Subfolders are not searched.

    Args:
        folder: str or PathLike. The folder; a missing one is left alone.

    Returns:
        The paths removed.
    """
    folder = pathlib.Path(folder)
    stale = sorted(folder.glob(f"{TMP_PREFIX}*")) if folder.is_dir() else []
    for path in stale:
        _remove(path)
    return stale


def owned_prefix(label: str) -> str:
    """A temporary name's prefix that names its writer: `.tmp-<label>-<host>-<pid>-`.

    A folder shared by several processes (an export base) cannot be cleaned
    with `remove_stale`; names with this prefix let `remove_orphans` remove
    only what a dead process of this machine left.
    """
    return f"{TMP_PREFIX}{label}-{socket.gethostname()}-{os.getpid()}-"


def remove_orphans(folder: str | os.PathLike) -> list[pathlib.Path]:
    """Removes the `owned_prefix` entries of `folder` whose writer has died.

    Only entries written on this machine by a process that no longer runs
    are removed; others, and temporary names without an owner, are left.

    Args:
        folder: str or PathLike. The folder; a missing one is left alone.

    Returns:
        The paths removed.
    """
    folder = pathlib.Path(folder)
    owned = re.compile(rf"{re.escape(TMP_PREFIX)}[^-]+-(?P<host>.+)-(?P<pid>\d+)-[^-]*")
    removed = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        match = owned.fullmatch(path.name)
        if match and match["host"] == socket.gethostname() and not _running(int(match["pid"])):
            _remove(path)
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
