/* libFuzzer target: tests/fuzz/lua/control_panel.lua (see fuzz_lua.h) on any bytes. */
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_lua_run("control_panel", data, size);
}
