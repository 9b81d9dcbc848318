// The few names of the C and C++ standard libraries that the kernel headers
// use: from the standard headers under a host compiler and nvcc, defined here
// under NVRTC (the run-time compiler of the JIT path), which has no standard
// headers. The definitions match the host ones bit for bit (INFINITY and NAN
// are given by their IEEE bits, those of glibc's __builtin_inff() and
// __builtin_nanf("")).
#pragma once

#if defined(__CUDACC_RTC__)
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#define INT32_MAX 2147483647
#define UINT32_MAX 4294967295u
#define FLT_MAX 3.402823466e+38F
#define DBL_MAX 1.7976931348623158e+308
#define INFINITY (__int_as_float(0x7f800000))
#define NAN (__int_as_float(0x7fc00000))
namespace std {
using ::isfinite;
}  // namespace std
#else
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#endif
