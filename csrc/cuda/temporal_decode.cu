// The kernels of temporal_decode, compiled by nvcc (see compiled.cuh).
#include "compiled.cuh"
#include "fastcolor/device/temporal_decode.cuh"

FASTCOLOR_COMPILE(temporal_decode)
