"""The limits of the ops, defined here and nowhere else.

setup.py reads this file and compiles the values into the C++ and CUDA kernels
(-DFASTCOLOR_MAX_K, -DFASTCOLOR_MAX_BINS), so the Python checks and the
kernels' own checks cannot drift apart; tests/test_limits.py asserts that the
built extension reports the same values. Without the extension these values
still hold: the reference enforces them through fastcolor.ops.
"""

MAX_K = 16  # the most neighbours of a soft encoding (k of soft_encode and the loss)
MAX_BINS = 4096  # the most bins of a codebook (Q)
