"""What parity means per precision, without importing any runtime: the max |difference| tolerated against eager
fp32 torch per dtype, and int8's thresholds on images (top-1 agreement and logit cosine)."""

from __future__ import annotations

#: Default parity tolerance (max |difference| against eager fp32 torch) per compute dtype.
#: int8 has none: its parity is top-1 agreement and logit cosine on images (the thresholds below).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 5e-2, "int8": None}

#: images sampled from a --calibration folder (the runtimes' own examples use a few hundred at most)
CALIBRATION_IMAGES = 100

#: int8 parity: a record below either is ``parity-failed`` (see docs/benchmarking.md)
MIN_TOP1_AGREEMENT = 0.9
MIN_LOGIT_COSINE = 0.98
