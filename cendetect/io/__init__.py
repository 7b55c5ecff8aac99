"""Inputs and outputs: discovery and output names (``discovery``), decoding with clear reasons
(``decode``), atomic writes (``atomic``), and the result writers: COCO JSON (``coco``), OPEX
JSON (``opex``) and ROI CSV (``roi_csv``), with their shared shapes (``shapes``)."""
