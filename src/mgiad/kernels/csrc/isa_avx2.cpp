// AVX2 + FMA instantiation of the kernels (see isa_avx512.cpp for the rule on the pragma).
#include <cstdint>
#include <utility>
#pragma GCC target("avx2,fma")
#include "isa_avx2.h"
#include "conv3x3.h"

MGIAD_DEFINE_ISA(avx2, Avx2)
