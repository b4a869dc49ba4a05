# The node-gyp build of the addon, used by prebuildify (`npm run prebuildify`) for the
# portable prebuilt binaries that ship in prebuilds/. ggml is built as static libraries by
# CMake (scripts/build-ggml.js, portable flags); the addon sources are the same as in
# CMakeLists.txt (which `npm install` uses to build from source with native CPU flags).
# NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED: no buffer over external memory reaches JS (Electron).
{
  "targets": [
    {
      "target_name": "specdec",
      "sources": ["<!@(node scripts/native-sources.js)"],
      "include_dirs": [
        "native",
        "deps/llama.cpp/ggml/include",
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_NO_EXTERNAL_BUFFERS_ALLOWED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "libraries": ["<!@(node scripts/build-ggml.js)", "-lpthread", "-ldl"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_LDFLAGS": ["-framework", "Accelerate"]
      }
    }
  ]
}
