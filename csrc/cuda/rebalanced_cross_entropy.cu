// The kernels of rebalanced_cross_entropy, compiled by nvcc (see compiled.cuh).
#include "compiled.cuh"
#include "fastcolor/device/rebalanced_cross_entropy.cuh"

FASTCOLOR_COMPILE(rebalanced_cross_entropy)
