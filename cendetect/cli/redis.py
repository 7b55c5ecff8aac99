"""``cendetect redis``: the Redis worker (mmdetection's ``mmdet_predict_redis`` flags).

Examples::

    cendetect redis --checkpoint r50.pth --redis_in images --redis_out predictions
    cendetect redis --checkpoint r50.pth --redis_in jobs --redis_out answers --redis-stream
"""

from __future__ import annotations

import argparse
import os
import signal
import socket

from cendetect.cli.common import (
    CliError,
    add_model_args,
    add_shape_args,
    load_detector,
    say,
    shape_options,
)

__all__ = ["add_parser", "serve"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``redis``."""
    p = sub.add_parser(
        "redis",
        help="serve detection requests from Redis (mmdet_predict_redis)",
        description="Pub/sub (default): subscribe to --redis_in, each message the bytes of an "
        "image; publish OPEX JSON (id = sha256 of the payload) or an error object on "
        "--redis_out. --redis-stream: read the stream --redis_in in a consumer group shared by "
        "several workers, append answers to the stream --redis_out; entries of dead workers "
        "are reclaimed after --redis-claim-idle seconds.",
    )
    p.add_argument("--redis_host", default="localhost", help="default %(default)s")
    p.add_argument("--redis_port", type=int, default=6379, help="default %(default)s")
    p.add_argument("--redis_db", type=int, default=0, help="default %(default)s")
    p.add_argument("--redis_password", help="password (prefer --redis_password_env)")
    p.add_argument("--redis_password_env", help="environment variable holding the password")
    p.add_argument("--redis_in", default="images", help="input channel/stream (%(default)s)")
    p.add_argument("--redis_out", default="predictions", help="output channel/stream")
    p.add_argument("--score", type=float, default=0.0, help="keep scores > this (default 0)")
    p.add_argument("--batch-size", type=int, default=1, help="requests per model call")
    s = p.add_argument_group("streams")
    s.add_argument("--redis-stream", action="store_true", help="use streams + consumer group")
    s.add_argument("--redis-group", default="cendetect", help="consumer group (%(default)s)")
    s.add_argument("--redis-consumer", help="consumer name (default host-pid)")
    s.add_argument(
        "--redis-claim-idle", type=float, default=30.0,
        help="seconds before another worker's pending entry is taken over (default 30)",
    )  # fmt: skip
    add_model_args(p)
    add_shape_args(p, mask_image=False)
    p.set_defaults(func=serve)
    return p


def serve(args: argparse.Namespace) -> int:
    """Run the worker until SIGINT/SIGTERM; returns the exit status."""
    import redis

    from cendetect.services.redis_worker import RedisWorker

    password = args.redis_password
    if args.redis_password_env:
        password = os.environ.get(args.redis_password_env)
        if password is None:
            raise CliError(f"--redis_password_env {args.redis_password_env}: variable not set")
    shapes = shape_options(args)
    detector = load_detector(args)
    client = redis.Redis(
        host=args.redis_host, port=args.redis_port, db=args.redis_db, password=password
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise CliError(
            f"cannot reach Redis at {args.redis_host}:{args.redis_port} db {args.redis_db}: {exc}"
        ) from None
    worker = RedisWorker(
        detector, client, args.redis_in, args.redis_out, score=args.score,
        batch_size=args.batch_size, report=lambda m: say(m.removeprefix("cendetect: ")),
        shapes=shapes,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    ready = lambda: say(f"ready: {args.redis_in} -> {args.redis_out}")  # noqa: E731
    try:
        if args.redis_stream:
            consumer = args.redis_consumer or f"{socket.gethostname()}-{os.getpid()}"
            worker.serve_stream(
                group=args.redis_group, consumer=consumer,
                claim_idle_ms=int(args.redis_claim_idle * 1000), on_ready=ready,
            )  # fmt: skip
        else:
            worker.serve_pubsub(on_ready=ready)
    except KeyboardInterrupt:
        pass
    except redis.RedisError as exc:
        raise CliError(f"Redis connection failed: {exc}") from None
    say(f"stopped: {worker.answered} answered, {worker.failed} failed")
    return 0
