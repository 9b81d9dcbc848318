// The kernels of nearest_bin, compiled by nvcc (see compiled.cuh).
#include "compiled.cuh"
#include "fastcolor/device/nearest_bin.cuh"

FASTCOLOR_COMPILE(nearest_bin)
