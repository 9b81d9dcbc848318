// The kernels of soft_encode, compiled by nvcc (see compiled.cuh).
#include "compiled.cuh"
#include "fastcolor/device/soft_encode.cuh"

FASTCOLOR_COMPILE(soft_encode)
