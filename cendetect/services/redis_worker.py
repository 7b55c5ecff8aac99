"""Redis workers (mmdetection's ``mmdet_predict_redis``): image bytes in, OPEX JSON out.

Two transports:

- **pub/sub** (:meth:`RedisWorker.serve_pubsub`): subscribes to ``channel_in``; each message is
  the raw bytes of an encoded image; the answer, published on ``channel_out``, is OPEX JSON
  whose ``id`` is the sha256 of the payload (so senders can match answers to requests). A payload
  that is not an image gets ``{"id": ..., "error": "..."}`` instead, and the worker goes on.
  Pub/sub delivers every message to every subscriber: run one worker per channel.
- **streams** (:meth:`RedisWorker.serve_stream`): several workers share one queue, the stream
  ``channel_in``, through a consumer group (``XREADGROUP``). Entries hold the image in field
  ``image`` (and optionally an ``id``; default the entry id). Answers are appended to the stream
  ``channel_out`` as ``{"id", "result"}`` *and* the entry is acknowledged in one atomic Lua
  script that first checks the entry is still pending for this consumer; entries left pending
  by a worker that died are taken over with ``XAUTOCLAIM`` once idle for ``claim_idle_ms``.
  So every entry gets exactly one answer, even when a worker is killed mid-batch.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cendetect.flow.stream import select
from cendetect.io.decode import ImageDecodeError, decode_image
from cendetect.io.opex import error_json, to_opex
from cendetect.io.shapes import ShapeOptions

if TYPE_CHECKING:
    import numpy as np
    import redis

    from cendetect.detector import Detector

__all__ = ["RedisWorker"]

# KEYS: input stream, output stream. ARGV: group, consumer, entry id, answer id, answer json.
# Answer and acknowledge together, and only if this consumer still owns the entry: a slow
# worker whose entry was claimed by another one must not answer it a second time.
_ANSWER_AND_ACK = """
local owned = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #owned == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[4], 'result', ARGV[5])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


def payload_id(data: bytes) -> str:
    """The id of a pub/sub answer: sha256 hex digest of the request payload."""
    return hashlib.sha256(data).hexdigest()


class RedisWorker:
    """Serves detection requests from Redis.

    Args:
        detector: the model.
        client: a ``redis.Redis`` connection (binary: ``decode_responses=False``).
        channel_in: channel (pub/sub) or stream key (streams) of the requests.
        channel_out: channel or stream key of the answers.
        score: keep detections with a score strictly above this.
        batch_size: requests per model call, taken from what is already waiting.
        max_pixels: refuse larger images (None: Pillow's limit).
        report: called with one line per failed request.
    """

    def __init__(
        self,
        detector: Detector,
        client: redis.Redis,
        channel_in: str,
        channel_out: str,
        score: float = 0.0,
        batch_size: int = 1,
        max_pixels: int | None = None,
        report: Callable[[str], None] = print,
        shapes: ShapeOptions | None = None,
    ) -> None:
        self.detector = detector
        self.shapes = shapes
        self.client = client
        self.channel_in = channel_in
        self.channel_out = channel_out
        self.score = score
        self.batch_size = max(1, int(batch_size))
        self.max_pixels = max_pixels
        self.report = report
        self.stop_event = threading.Event()
        self.answered = 0
        self.failed = 0

    def stop(self) -> None:
        """End the serving loop (from any thread) within about a second."""
        self.stop_event.set()

    def answer(self, requests: Sequence[tuple[str, bytes]]) -> list[tuple[str, str]]:
        """``(id, json)`` answers for ``(id, image bytes)`` requests, one each, in order."""
        out: list[tuple[str, str] | None] = [None] * len(requests)

        def error(i: int, reason: str) -> None:
            rid = requests[i][0]
            out[i] = (rid, error_json(rid, reason))
            self.failed += 1
            self.report(f"cendetect: request {rid}: {reason}")

        images: list[tuple[int, np.ndarray]] = []
        for i, (rid, data) in enumerate(requests):
            try:
                images.append((i, decode_image(data, rid, self.max_pixels)))
            except ImageDecodeError as exc:
                error(i, exc.reason)
        if images:
            try:
                dets = self.detector.predict([im for _, im in images])
            except Exception as exc:  # noqa: BLE001 - answered with an error; serving goes on
                for i, _ in images:
                    error(i, f"inference failed: {type(exc).__name__}: {exc}")
            else:
                for (i, _), det in zip(images, dets, strict=True):
                    rid = requests[i][0]
                    out[i] = (
                        rid,
                        to_opex(select(det, self.score), rid, shapes=self.shapes).to_json_string(),
                    )
        return [a for a in out if a is not None]

    # ---- pub/sub --------------------------------------------------------------------------

    def serve_pubsub(self, on_ready: Callable[[], None] | None = None) -> None:
        """Subscribe to ``channel_in`` and answer on ``channel_out`` until :meth:`stop`."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel_in)
        try:
            if on_ready is not None:
                on_ready()
            while not self.stop_event.is_set():
                msg = pubsub.get_message(timeout=0.5)
                if msg is None:
                    continue
                batch = [msg]
                while len(batch) < self.batch_size:
                    more = pubsub.get_message(timeout=0.0)
                    if more is None:
                        break
                    batch.append(more)
                requests = [(payload_id(m["data"]), m["data"]) for m in batch]
                for _, text in self.answer(requests):
                    self.client.publish(self.channel_out, text)
                    self.answered += 1
        finally:
            pubsub.close()

    # ---- streams --------------------------------------------------------------------------

    def serve_stream(
        self,
        group: str = "cendetect",
        consumer: str = "worker",
        claim_idle_ms: int = 30_000,
        block_ms: int = 500,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        """Consume the stream ``channel_in`` in consumer group ``group`` until :meth:`stop`."""
        import redis as redis_mod

        try:
            self.client.xgroup_create(self.channel_in, group, id="0", mkstream=True)
        except redis_mod.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        script = self.client.register_script(_ANSWER_AND_ACK)
        if on_ready is not None:
            on_ready()
        while not self.stop_event.is_set():
            entries = self._claim(group, consumer, claim_idle_ms)
            if not entries:
                got = self.client.xreadgroup(
                    group, consumer, {self.channel_in: ">"}, count=self.batch_size, block=block_ms
                )
                entries = got[0][1] if got else []
            if entries:
                self._answer_entries(entries, script, group, consumer)

    def _claim(self, group: str, consumer: str, idle_ms: int) -> list[Any]:
        res = self.client.xautoclaim(
            self.channel_in, group, consumer, idle_ms, start_id="0-0", count=self.batch_size
        )
        return [e for e in res[1] if e and e[1] is not None]

    def _answer_entries(self, entries: list[Any], script: Any, group: str, consumer: str) -> None:
        requests = []
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            rid = fields.get(b"id", fields.get("id", eid))
            rid = rid.decode() if isinstance(rid, bytes) else str(rid)
            requests.append((eid, rid, fields.get(b"image", fields.get("image", b""))))
        answers = self.answer([(rid, data) for _, rid, data in requests])
        for (eid, rid, _), (_, text) in zip(requests, answers, strict=True):
            done = script(
                keys=[self.channel_in, self.channel_out], args=[group, consumer, eid, rid, text]
            )
            if done:
                self.answered += 1
