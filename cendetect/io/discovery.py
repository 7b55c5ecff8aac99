"""Finding inputs and naming outputs.

Inputs are found recursively with case-insensitive extensions. Outputs mirror the input's
sub-folders under the output root and are named after the input (``photo.jpg`` ->
``photo.png``). Two inputs that would get the same output name (``a.jpg`` and ``a.png`` in one
folder) never overwrite each other: the one whose extension already is the output's keeps the
plain name, the others get their extension in the name (``a.jpg.png``).

A *list file* (``.txt`` or ``.lst``) given as the input names its inputs, one path per line
(relative to the list's folder; blank lines and ``#`` comments ignored; a folder entry is
searched like an input folder); outputs are named relative to the list's folder.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".avi", ".webm", ".mov"})
LIST_EXTENSIONS = frozenset({".txt", ".lst"})


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
    if root.is_file() and root.suffix.lower() in LIST_EXTENSIONS:
        return _listed_inputs(root, extensions, errors)
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


def _listed_inputs(
    listing: Path, extensions: Iterable[str], errors: list[tuple[str, str]] | None
) -> list[Path]:
    """The inputs a list file names, in its order (folders expanded, duplicates dropped); an
    entry that does not exist goes to ``errors`` as ``(entry, reason)``."""
    found: dict[Path, None] = {}
    base = listing.parent
    for n, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry) if Path(entry).is_absolute() else base / entry
        if path.is_dir():
            found.update(dict.fromkeys(discover_inputs(path, extensions, errors)))
        elif path.is_file():
            found[path] = None
        elif errors is not None:
            errors.append((str(path), f"listed in {listing} (line {n}) but does not exist"))
    return list(found)


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
    base = input_root if input_root.is_dir() else input_root.parent
    relative = {p: p.relative_to(base) if p.is_relative_to(base) else Path(p.name) for p in inputs}
    return outputs_for_names(relative, output_root, suffix)


def outputs_for_names(
    relative: dict[Any, Path], output_root: str | os.PathLike[str], suffix: str = ".png"
) -> dict[Any, Path]:
    """Map each input (any key: a path, a storage URI) to its output path, given its name
    relative to the input root, with :func:`output_paths`' rule for clashes."""
    output_root = Path(output_root)
    wanted: dict[Path, list[Any]] = defaultdict(list)
    for p, rel in relative.items():
        wanted[output_root / rel.with_suffix(suffix)].append(p)
    result: dict[Any, Path] = {}
    for out, sources in wanted.items():
        if len(sources) == 1:
            result[sources[0]] = out
            continue
        names = {s: relative[s] for s in sources}
        keeper = next((s for s in sources if names[s].suffix.lower() == suffix.lower()), None)
        for s in sources:
            result[s] = out if s is keeper else out.with_name(names[s].name + suffix)
    return result
