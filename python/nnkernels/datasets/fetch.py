"""Fetch a file from a list of mirrors with SHA-256 verification.

The bytes go to a temporary file next to the destination; only when the
length and the SHA-256 match is it renamed into place (``os.replace`` is
atomic on one file system). A truncated or corrupt download is deleted and the
next mirror is tried, so a bad file is never left where a later run would read it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

__all__ = ["DownloadError", "download_file", "sha256_of"]

_CHUNK = 1 << 16


class DownloadError(OSError):
    """No mirror delivered a file with the expected SHA-256."""


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _fetch(url: str, tmp: Path, timeout: float, progress: bool, desc: str) -> str:
    """Stream ``url`` into ``tmp``; return its SHA-256. Raises on HTTP errors and short reads."""
    from tqdm.auto import tqdm

    h = hashlib.sha256()
    req = urllib.request.Request(url, headers={"User-Agent": "nnkernels"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as out:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                  disable=not progress, file=sys.stderr, leave=False) as bar:
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise OSError(f"truncated: received {received} of {total} bytes")
    return h.hexdigest()


def download_file(filename: str, dest_dir: str | os.PathLike, mirrors: Sequence[str], sha256: str,
             *, progress: bool = True, timeout: float = 30.0) -> Path:
    """Download ``filename`` into ``dest_dir`` from the first mirror that serves the right bytes.

    Each mirror is a base URL; the file's URL is ``mirror.rstrip('/') + '/' + filename``.
    If the destination already exists with the right SHA-256 nothing is fetched; if it
    exists with another SHA-256 it is replaced. Raises DownloadError listing every
    mirror's failure when none succeeds; the destination is then absent.
    """
    dest_dir = Path(dest_dir)
    dest = dest_dir / filename
    if dest.is_file():
        if sha256_of(dest) == sha256:
            return dest
        dest.unlink()  # corrupt or stale: never keep it
    if not mirrors:
        raise DownloadError(f"{filename}: no mirror URLs configured")
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{filename}.part-{os.getpid()}"
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            got = _fetch(url, tmp, timeout, progress, desc=filename)
            if got != sha256:
                raise OSError(f"SHA-256 mismatch (got {got[:12]}..., expected {sha256[:12]}...)")
            os.replace(tmp, dest)
            return dest
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # URLError/HTTPError/timeouts are OSErrors; IncompleteRead is an HTTPException
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(exc, urllib.error.HTTPError):
                exc.close()  # an HTTPError holds the open response
            failures.append(f"{url}: {reason}")
        finally:
            if tmp.exists():
                tmp.unlink()
    raise DownloadError(f"could not download {filename}: " + "; ".join(failures))
