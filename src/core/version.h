// Version and commit of this build. The commit lives in one generated file
// (build/generated/version.cpp) so that a new commit recompiles one file, not the project.
#pragma once

namespace omnirt {
const char* version();     // "0.1.0"
const char* git_commit();  // short hash, or "unknown"
}  // namespace omnirt
