/* FNV-1a 64 over a buffer: the hash llama.cpp's RPC tensor cache names files by.
   Built on first use by services/runner/hashing.py (a Python loop runs at ~7 MiB/s; this at memory speed). */
#include <stddef.h>
#include <stdint.h>

uint64_t mesh_fnv1a64(const uint8_t *data, size_t len) {
    uint64_t hash = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; ++i) {
        hash ^= data[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}
