// AVX2 + FMA instantiation of the transfer kernels (see isa_avx512.cpp for the rule on the pragma).
#include <algorithm>
#include <cstdint>
#include <utility>
#pragma GCC target("avx2,fma")
#include "isa_avx2.h"
#include "transfer_kernels.h"

MGIAD_DEFINE_TRANSFERS(avx2, Avx2)
