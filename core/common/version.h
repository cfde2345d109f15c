#pragma once
namespace hedgelab {
inline constexpr const char* kVersion = HEDGELAB_VERSION;
}
