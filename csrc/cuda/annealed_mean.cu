// The kernels of annealed_mean, compiled by nvcc (see compiled.cuh).
#include "compiled.cuh"
#include "fastcolor/device/annealed_mean.cuh"

FASTCOLOR_COMPILE(annealed_mean)
