"""``cendetect run``: CenDetect's ``det.py`` with its flags, pipelined, plus more outputs.

Example::

    cendetect run --input_path input --output_path output --checkpoint r50.pth --confidence 0.3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cendetect.cli.common import (
    CliError,
    add_model_args,
    add_shape_args,
    load_detector,
    say,
    shape_options,
)

__all__ = ["add_parser", "run"]

MODES = ("fill", "mask", "mosaic", "blur", "overlay", "heatmap")


def _classes(text: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    if not names:
        raise argparse.ArgumentTypeError("--classes needs at least one class name, e.g. bar,mosaic")
    return names


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``run`` (also used when the command line starts with an option)."""
    from cendetect.io.decode import DEFAULT_MAX_PIXELS

    p = sub.add_parser(
        "run",
        help="detect in images and videos of a folder (CenDetect's det.py)",
        description="Detect bars and mosaics in every image (png, jpg, jpeg, webp, bmp, tif, "
        "tiff) and video (mp4, mkv, avi, webm, mov) under --input_path, recursively, and write "
        "the image with the regions filled green [0,255,0] as PNG under --output_path, keeping "
        "sub-folders. Exit status: 0 all done, 1 some inputs failed, 2 usage or model error.",
    )
    p.add_argument(
        "--input_path", default="input",
        help="folder or file; or a live source: a camera index (0), /dev/videoN, or a stream "
        "URL (rtsp, rtmp, http(s), udp, tcp, srt), written to --output_path as a video file "
        "(out.mp4) or a folder of frames; Ctrl-C ends it with the file complete",
    )  # fmt: skip
    p.add_argument("--output_path", type=Path, default=Path("output"), help="output folder")
    p.add_argument(
        "--confidence", type=float, default=0.3, help="keep scores > this (default %(default)s)"
    )
    add_model_args(p)
    g = p.add_argument_group("outputs")
    g.add_argument(
        "--mode", choices=MODES, default="fill",
        help="output image (default fill); heatmap: the model's mask probabilities before the "
        "threshold as a colour map over the image (maskrcnn-benchmark's --show-mask-heatmaps)",
    )  # fmt: skip
    g.add_argument("--dilate", type=int, default=0, help="grow masks by N pixels first")
    g.add_argument("--classes", type=_classes, help="classes to keep, e.g. bar,mosaic")
    g.add_argument(
        "--save-json", choices=("coco", "opex"), help="coco: output/coco.json; opex: a .json "
        "beside each output image"
    )  # fmt: skip
    g.add_argument("--save-csv", action="store_true", help="a ROI CSV (*-rois.csv) per image")
    g.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs exist")
    g.add_argument(
        "--layout",
        choices=("tree", "deepcreampy"),
        default="tree",
        help="tree (default): one output per input, keeping sub-folders; deepcreampy: "
        "DeepCreamPy's flat folders OUT/bar/decensor_input, OUT/mosaic/decensor_input and "
        "OUT/mosaic/decensor_input_original, each image filled with its own class's regions "
        "(--classes picks the trees; sub-folders are joined into the name by '__')",
    )
    add_shape_args(p)
    e = p.add_argument_group("execution")
    e.add_argument("--batch-size", type=int, help="images per model call (default 4 on cuda, 1)")
    e.add_argument("--workers", type=int, default=2, help="decode/encode threads (default 2)")
    e.add_argument(
        "--streams",
        type=int,
        help="images inferred at once, each with cores/N threads (default 2 on a CPU with 2+ "
        "cores, 1 on cuda)",
    )
    e.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse images with more pixels (default %(default)s, Pillow's limit)",
    )
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    r = p.add_argument_group("Ray cluster (pip install 'cendetect[ray]'; docs/scale.md)")
    r.add_argument(
        "--ray", nargs="?", const="local", metavar="ADDRESS",
        help="run the images on Ray: no ADDRESS starts a local cluster for the run; 'auto' "
        "joins this machine's cluster; ray://host:port a remote one (videos still run here)",
    )  # fmt: skip
    r.add_argument(
        "--actors", default="1", help="model actors: N, or LO-HI to autoscale (default 1)"
    )
    r.add_argument("--cpus-per-actor", type=float, default=1.0, help="default 1")
    r.add_argument("--gpus-per-actor", type=float, default=0.0, help="default 0")
    e.add_argument(
        "--max-frames", type=int, help="live sources: stop after this many frames (default: "
        "until the stream ends or Ctrl-C)",
    )  # fmt: skip
    p.set_defaults(func=run)
    return p


def _detector(args: argparse.Namespace):  # noqa: ANN202 - Detector, imported lazily
    """The model the options name; ``--classes`` must name classes it has."""
    detector = load_detector(args)
    unknown = [c for c in args.classes or () if c not in detector.class_names]
    if unknown:
        raise CliError(
            f"--classes: unknown class {unknown[0]!r}; this model's classes are "
            f"{', '.join(detector.class_names)}"
        )
    return detector


def _output_options(args: argparse.Namespace, shapes=None, **layout: object):  # noqa: ANN001, ANN202
    """What to write for each input, from the output options (``shapes``: the checked
    :func:`shape_options`, else checked here; ``layout``: the layout's fields of
    :class:`~cendetect.flow.images.OutputOptions`)."""
    from cendetect.flow.images import OutputOptions

    return OutputOptions(
        mode=args.mode, dilate=args.dilate, confidence=args.confidence, classes=args.classes,
        save_json=args.save_json, save_csv=args.save_csv,
        shapes=shape_options(args) if shapes is None else shapes,
        output_mask_image=args.output_mask_image, **layout,
    )  # fmt: skip


def _deepcreampy_checks(args: argparse.Namespace, class_names: tuple[str, ...]) -> tuple[str, ...]:
    """The trees a deepcreampy run makes; refuses options that layout cannot honour."""
    from cendetect.io.deepcreampy import CLASSES

    if args.mode != "fill":
        raise CliError(f"--layout deepcreampy writes green fills; --mode {args.mode} cannot apply")
    if args.save_json or args.save_csv:
        raise CliError(
            "--layout deepcreampy writes only DeepCreamPy's folders; run without --layout for "
            "--save-json / --save-csv"
        )
    wanted = args.classes or tuple(c for c in CLASSES if c in class_names)
    other = [c for c in wanted if c not in CLASSES]
    if other:
        raise CliError(
            f"--layout deepcreampy: DeepCreamPy has no mode for class {other[0]!r}; its trees "
            f"are {', '.join(CLASSES)}"
        )
    if not wanted:
        raise CliError(
            f"--layout deepcreampy: this model has neither {' nor '.join(CLASSES)} "
            f"(its classes: {', '.join(class_names)})"
        )
    return wanted


def _run_live(args: argparse.Namespace, source: str) -> int:
    """``--input_path`` is a camera or a stream (cendetect/flow/live.py)."""
    from cendetect.flow.images import OutputOptions
    from cendetect.flow.live import run_live

    if args.layout != "tree" or args.save_json or args.save_csv or args.output_mask_image:
        raise CliError(
            f"--input_path {source} is a live source: it writes a video or a folder of frames; "
            "--layout, --save-json, --save-csv and --output_mask_image take files"
        )
    if args.max_frames is not None and args.max_frames < 1:
        raise CliError(f"--max-frames {args.max_frames}: must be >= 1")
    detector = _detector(args)
    opts = OutputOptions(
        mode=args.mode, dilate=args.dilate, confidence=args.confidence, classes=args.classes
    )
    summary = run_live(detector, source, args.output_path, opts, max_frames=args.max_frames)
    print(f"cendetect: {summary.line()}", flush=True)
    return 1 if summary.failed else 0


def _run_ray(args: argparse.Namespace, detector, jobs, opts, batch_size: int):  # noqa: ANN001
    """The image jobs on Ray (cendetect/ray.py); ``jobs`` None: the images of the folder
    ``--input_path``, listed on Ray."""
    try:
        import ray  # noqa: F401

        from cendetect.ray import (
            RayOptions,
            RayUnavailable,
            parse_actors,
            run_folder_ray,
            run_images_ray,
        )
    except ImportError:
        raise CliError("--ray needs Ray: pip install 'cendetect[ray]'") from None
    try:
        actors = parse_actors(args.actors)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.cpus_per_actor <= 0 or args.gpus_per_actor < 0:
        raise CliError("--cpus-per-actor must be > 0 and --gpus-per-actor >= 0")
    address = None if args.ray == "local" else args.ray
    options = RayOptions(
        address, actors, args.cpus_per_actor, args.gpus_per_actor, batch_size, args.workers
    )
    try:
        if jobs is None:  # the folder of --input_path, listed on Ray
            return run_folder_ray(
                detector, args.input_path, opts, args.output_path, options,
                overwrite=args.overwrite, max_pixels=args.max_pixels, report=say,
            )  # fmt: skip
        return run_images_ray(
            detector, jobs, opts, args.output_path, options, overwrite=args.overwrite,
            max_pixels=args.max_pixels, report=say,
        )  # fmt: skip
    except RayUnavailable as exc:
        raise CliError(f"--ray {args.ray}: {exc}") from None


def _run_uri(args: argparse.Namespace, uri: str) -> int:
    """``--input_path`` is a storage URI (s3://, gs://, file://...): read through Ray."""
    from cendetect.flow.images import Job
    from cendetect.io.discovery import outputs_for_names

    if args.ray is None:
        raise CliError(
            f"--input_path {uri}: storage URIs are read through Ray's filesystems (pyarrow); "
            "add --ray"
        )
    if args.layout != "tree":
        raise CliError(f"--input_path {uri}: --layout {args.layout} takes a local folder")
    try:
        from cendetect.ray import discover_uri

        found = discover_uri(uri)
    except ImportError:
        raise CliError("--ray needs Ray: pip install 'cendetect[ray]'") from None
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise CliError(f"--input_path {uri}: {exc}") from None
    detector = _detector(args)
    outputs = outputs_for_names({u: Path(rel) for u, rel in found.items()}, args.output_path)
    jobs = [Job(Path(rel), rel.as_posix(), outputs[u], None, u) for u, rel in found.items()]
    args.output_path.mkdir(parents=True, exist_ok=True)
    opts = _output_options(args)
    batch_size = args.batch_size or (4 if detector.device.type == "cuda" else 1)
    summary = _run_ray(args, detector, jobs, opts, batch_size)
    if not jobs:
        say(f"{uri}: no images found")
    print(f"cendetect: {summary.line()}", flush=True)
    return 1 if summary.failed else 0


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    from cendetect.flow.images import (
        OutputOptions,
        Summary,
        default_streams,
        plan_jobs,
        run_images,
    )
    from cendetect.io.discovery import (
        IMAGE_EXTENSIONS,
        VIDEO_EXTENSIONS,
        discover_inputs,
        is_video,
        output_paths,
    )

    raw_input = str(args.input_path)
    args.input_path = Path(raw_input)
    if args.dilate < 0:
        raise CliError(f"--dilate {args.dilate}: must be >= 0")
    from cendetect.flow.live import is_live_source

    if not args.input_path.exists() and is_live_source(raw_input):
        return _run_live(args, raw_input)
    from cendetect.ray import is_storage_uri

    if is_storage_uri(raw_input):
        return _run_uri(args, raw_input)
    if args.workers < 0:
        raise CliError(f"--workers {args.workers}: must be >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        raise CliError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.streams is not None and args.streams < 1:
        raise CliError(f"--streams {args.streams}: must be >= 1")
    shapes = shape_options(args)
    listing_errors: list[tuple[str, str]] = []
    # on Ray, a folder's images are listed by a Ray task as they are processed (cendetect/ray.py
    # run_folder_ray): the driver never holds them; only its videos are listed here
    streamed = args.ray is not None and args.layout == "tree" and args.input_path.is_dir()
    try:
        inputs = discover_inputs(
            args.input_path,
            extensions=VIDEO_EXTENSIONS if streamed else IMAGE_EXTENSIONS | VIDEO_EXTENSIONS,
            errors=None if streamed else listing_errors,  # on Ray, the listing task reports
        )
    except FileNotFoundError:
        raise CliError(
            f"--input_path {args.input_path}: no such file or folder (CenDetect's default "
            "is a folder named 'input' in the current directory)"
        ) from None
    detector = _detector(args)
    layout_classes: tuple[str, ...] = ()
    if args.layout == "deepcreampy":
        layout_classes = _deepcreampy_checks(args, detector.class_names)
    batch_size = args.batch_size or (4 if detector.device.type == "cuda" else 1)
    streams = args.streams or default_streams(detector.device.type)
    if streams > 1 and not detector.concurrent:
        if args.streams:
            say(
                f"--streams {args.streams}: {detector.engine} engines run one call at a time; "
                "using one stream"
            )
        streams = 1
    args.output_path.mkdir(parents=True, exist_ok=True)
    opts = _output_options(
        args,
        shapes,
        layout=args.layout,
        layout_classes=layout_classes or OutputOptions().layout_classes,
    )
    images = [p for p in inputs if not is_video(p)]
    videos = [p for p in inputs if is_video(p)]
    summary = Summary()
    for path, reason in listing_errors:
        say(f"{path}: {reason}")
        summary.failed.append((path, reason))
    flat = None
    if args.layout == "deepcreampy":
        from cendetect.io.deepcreampy import LayoutError, flat_names

        try:  # before anything is written
            flat = flat_names(images, args.input_path)
        except LayoutError as exc:
            raise CliError(str(exc)) from None
        for v in videos:
            say(f"{v}: skipped: the deepcreampy layout takes images (DeepCreamPy reads images)")
        summary.skip("videos (the deepcreampy layout takes images)", len(videos))
        videos = []
    progress = False if args.no_progress else None
    if streamed:
        summary.merge(_run_ray(args, detector, None, opts, batch_size))
    if images:
        jobs = plan_jobs(images, output_paths(images, args.input_path, args.output_path),
                         args.input_path, flat)  # fmt: skip
        if args.ray is not None:
            summary.merge(_run_ray(args, detector, jobs, opts, batch_size))
        else:
            summary.merge(
                run_images(
                    detector, jobs, opts, args.output_path, batch_size=batch_size,
                    workers=args.workers, streams=streams, overwrite=args.overwrite,
                    max_pixels=args.max_pixels, progress=progress,
                )
            )  # fmt: skip
    if videos:
        from cendetect.flow.video import run_videos

        summary.merge(
            run_videos(detector, videos, args.input_path, args.output_path, opts,
                       batch_size=batch_size, overwrite=args.overwrite, progress=progress)
        )  # fmt: skip
    if not inputs and not (summary.processed or summary.skipped or summary.failed):
        say(f"{args.input_path}: no images or videos found")
    print(f"cendetect: {summary.line()}", flush=True)
    if summary.failed:
        say(f"{len(summary.failed)} input(s) failed; each is named above with its reason")
    return 1 if summary.failed else 0
