"""How images flow through cendetect: sources -> detector -> sinks.

- :mod:`cendetect.flow.stream`: frames in, :class:`~cendetect.engine.postprocess.Detections`
  out, in order, with bounded look-ahead (decoding in worker threads), and the confidence and
  class filter :func:`~cendetect.flow.stream.select`;
- :mod:`cendetect.flow.images`: a folder of images to output images, JSON, CSV or DeepCreamPy's
  folders (``cendetect run``), with its summary;
- :mod:`cendetect.flow.video`: video files, frame by frame, audio copied;
- :mod:`cendetect.flow.live`: cameras and stream URLs.

The services (``cendetect.services``: the polled folder and Redis) are sinks of the same kind
with their own sources.
"""
