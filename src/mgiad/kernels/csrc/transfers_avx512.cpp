// AVX-512 instantiation of the transfer kernels (see isa_avx512.cpp for the rule on the pragma).
#include <algorithm>
#include <cstdint>
#include <utility>
#pragma GCC target("avx512f,avx2,fma")
#include "isa_avx512.h"
#include "transfer_kernels.h"

MGIAD_DEFINE_TRANSFERS(avx512, Avx512)
