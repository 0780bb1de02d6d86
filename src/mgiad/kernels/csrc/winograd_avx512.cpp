// AVX512 instantiation of the Winograd kernels (see isa_avx512.cpp for the rule on the pragma).
#include <algorithm>
#include <cstdint>
#pragma GCC target("avx512f,avx2,fma")
#include "isa_avx512.h"
#include "winograd_kernels.h"

MGIAD_DEFINE_WINOGRAD(avx512, Avx512)
