"""Finding inputs and naming outputs.

Inputs are found recursively with case-insensitive extensions. Outputs mirror the input's
sub-folders under the output root and are named after the input (``photo.jpg`` ->
``photo.png``). Two inputs that would get the same output name (``a.jpg`` and ``a.png`` in one
folder) never overwrite each other: the one whose extension already is the output's keeps the
plain name, the others get their extension in the name (``a.jpg.png``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".avi", ".webm", ".mov"})


def is_image(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def discover_inputs(
    root: str | os.PathLike[str],
    extensions: Iterable[str] = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS,
    errors: list[tuple[str, str]] | None = None,
) -> list[Path]:
    """Files under ``root`` (recursively, sorted) whose lower-cased suffix is in ``extensions``.

    ``root`` may be a single file, which is returned as is whatever its extension (the user
    named it). Hidden files and folders (leading ``.``) are skipped. ``FileNotFoundError`` if
    ``root`` does not exist. Folders that cannot be listed are appended to ``errors`` as
    ``(path, reason)`` when it is given (and silently passed over otherwise).
    """
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"input path {str(root)!r} does not exist")
    exts = {e.lower() for e in extensions}
    found: list[Path] = []

    def unreadable(exc: OSError) -> None:
        if errors is not None:
            errors.append((str(exc.filename), f"cannot list the folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in exts:
                found.append(Path(dirpath) / name)
    return sorted(found)


def output_paths(
    inputs: list[Path],
    input_root: str | os.PathLike[str],
    output_root: str | os.PathLike[str],
    suffix: str = ".png",
) -> dict[Path, Path]:
    """Map every input to its output path, keeping sub-folders and avoiding name clashes.

    Args:
        inputs: files found under ``input_root`` (or ``input_root`` itself, a single file).
        suffix: the output's extension, e.g. ``.png`` or ``.mp4``.
    """
    input_root = Path(input_root)
    output_root = Path(output_root)
    base = input_root if input_root.is_dir() else input_root.parent
    wanted: dict[Path, list[Path]] = defaultdict(list)
    for p in inputs:
        rel = p.relative_to(base) if p.is_relative_to(base) else Path(p.name)
        wanted[output_root / rel.with_suffix(suffix)].append(p)
    result: dict[Path, Path] = {}
    for out, sources in wanted.items():
        if len(sources) == 1:
            result[sources[0]] = out
            continue
        keeper = next((s for s in sources if s.suffix.lower() == suffix.lower()), None)
        for s in sources:
            result[s] = out if s is keeper else out.with_name(s.name + suffix)
    return result
