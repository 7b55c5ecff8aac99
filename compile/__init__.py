"""Checkpoint -> model -> deployable artifact (installed as ``cendetect.compile``).

Empty until the compile issue lands; kept so the wheel's package table (DESIGN.md) has its
three entries from the start.
"""
