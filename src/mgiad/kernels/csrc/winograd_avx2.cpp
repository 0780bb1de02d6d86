// AVX2 instantiation of the Winograd kernels (see isa_avx512.cpp for the rule on the pragma).
#include <algorithm>
#include <cstdint>
#pragma GCC target("avx2,fma")
#include "isa_avx2.h"
#include "winograd_kernels.h"

MGIAD_DEFINE_WINOGRAD(avx2, Avx2)
