"""Input discovery, decoding and atomic output writing."""
