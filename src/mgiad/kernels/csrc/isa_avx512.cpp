// AVX-512 instantiation of the kernels. Nothing but this file's own code may follow the pragma
// (standard headers come first), so no inline function shared with other files gets AVX-512 code.
#include <cstdint>
#include <utility>
#pragma GCC target("avx512f,avx2,fma")
#include "isa_avx512.h"
#include "conv3x3.h"

MGIAD_DEFINE_ISA(avx512, Avx512)
