/* libFuzzer target: vmdr.json decode, then encode/decode/encode must agree. */
#include "fuzz_codec.h"

int luaopen_vmdr_json(lua_State *L);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_roundtrip(data, size, luaopen_vmdr_json);
}
