/* libFuzzer target: tests/fuzz/lua/selector.lua (see fuzz_lua.h) on any bytes. */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_lua_run("selector", data, size);
}
