# ctest api_install_example: `cmake --install` of this build into a temporary prefix, then
# examples/cpp_api configured with find_package(omnirt) against that prefix only, built, and
# run on the tiny checkpoint over the tiny scene (CPU, greedy). Checks the printed results.
# Arguments: -DOMNIRT_BUILD_DIR -DOMNIRT_SOURCE_DIR -DWORK_DIR -DCXX_COMPILER
function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  set(step_out "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")
run_step("cmake --install" ${CMAKE_COMMAND} --install "${OMNIRT_BUILD_DIR}" --prefix "${prefix}")
foreach(f include/omnirt/omnirt.h include/omnirt/core/error.h lib/cmake/omnirt/omnirtConfig.cmake
        lib/cmake/omnirt/omnirtConfigVersion.cmake lib/cmake/omnirt/omnirtTargets.cmake
        lib/libomnirt.a bin/omnirt)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "install: ${prefix}/${f} missing")
  endif()
endforeach()

run_step("configure examples/cpp_api" ${CMAKE_COMMAND} -S "${OMNIRT_SOURCE_DIR}/examples/cpp_api"
         -B "${WORK_DIR}/build" "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
         -DCMAKE_BUILD_TYPE=Release)
run_step("build examples/cpp_api" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
# The example must have compiled against the installed headers, not the source tree.
set(flags_file "${WORK_DIR}/build/CMakeFiles/omnirt_example.dir/flags.make")  # Makefile generator
if(EXISTS "${flags_file}")
  file(READ "${flags_file}" flags)
  string(FIND "${flags}" "${OMNIRT_SOURCE_DIR}/src" src_in_flags)
  if(NOT src_in_flags EQUAL -1)
    message(FATAL_ERROR "the example's include path names the source tree:\n${flags}")
  endif()
endif()

run_step("omnirt_example" "${WORK_DIR}/build/omnirt_example" "${OMNIRT_SOURCE_DIR}/tests/data/tiny_ckpt"
         "${OMNIRT_SOURCE_DIR}/tests/data/tiny_scene" --cpu --greedy --max-new 8)
message(STATUS "omnirt_example output:\n${step_out}")
# tiny checkpoint: 12 boxes (max_boxes), 12 lanes (num_lane_one2one); 3 frames + the repeat.
foreach(expect "scene tiny_scene: 3 usable frames"
               "frame 0 (frame_000): 12 boxes, 12 lanes [memory reset]"
               "frame 1 (frame_001): 12 boxes, 12 lanes\n"
               "frame 2 (frame_002): 12 boxes, 12 lanes\n"
               "first frame again, from RGB buffers (new scene):\nframe 0 (frame_000): 12 boxes, 12 lanes [memory reset]"
               "answer (8 tokens, stop: max_new_tokens)")
  string(FIND "${step_out}" "${expect}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "omnirt_example output lacks \"${expect}\"")
  endif()
endforeach()
# The same frame from file paths and from RGB buffers: identical boxes and answer. (Semicolons in
# the random-weight answer text would split CMake's list: escape them first.)
string(REPLACE ";" "<semicolon>" step_out "${step_out}")
string(REGEX MATCHALL "frame 0 \\(frame_000\\)[^\n]*\n(  box[^\n]*\n)+  answer[^\n]*\n" first "${step_out}")
list(LENGTH first n)
if(NOT n EQUAL 2)
  message(FATAL_ERROR "expected frame 0 twice in the output, found ${n}")
endif()
list(GET first 0 a)
list(GET first 1 b)
if(NOT a STREQUAL b)
  message(FATAL_ERROR "frame 0 from paths and from RGB buffers differ:\n${a}\n${b}")
endif()
