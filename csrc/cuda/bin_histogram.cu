// The kernels of bin_histogram, compiled by nvcc (see compiled.cuh).
#include "compiled.cuh"
#include "fastcolor/device/bin_histogram.cuh"

FASTCOLOR_COMPILE(bin_histogram)
