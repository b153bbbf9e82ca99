"""Files the product writes for operators (reports, benchmark figures): created 0600,
written atomically, and never over anything but a regular file."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from libvirt_drs.errors import UserError


def write_private(path: Path | str, text: str) -> Path:
    """Write `text` to `path` with mode 0600 (reports may name hosts and VMs).

    The text goes to a temporary file beside `path`, which then replaces it in one rename,
    so a reader never sees half a report. An existing symlink, device, FIFO or directory
    at `path` is refused, not replaced; missing directories are created; a failure is one
    UserError line."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    else:
        if not stat.S_ISREG(st.st_mode):
            kind = ("a symlink" if stat.S_ISLNK(st.st_mode) else "a directory"
                    if stat.S_ISDIR(st.st_mode) else "a device or special file")
            raise UserError(f"{path} exists and is {kind}: refusing to replace it (name a new "
                            "file or a regular one)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
