# The build pip runs (scikit-build-core). pip gives every build a new isolated environment,
# and scikit-build-core then deletes this build directory's CMakeCache.txt and CMakeFiles/,
# where CMake keeps the object files: every `pip install` would compile the CUDA kernels again
# (about 10 minutes on 2 cores). So the real project is configured, built and installed in
# ${CMAKE_BINARY_DIR}/core, which nothing deletes, with inputs that do not move between
# environments (pybind11 is copied there, file by file, only where its content changed).
# The core's ninja then rebuilds only what changed.

set(TRTCAL_CORE_DIR ${CMAKE_BINARY_DIR}/core)

# pybind11 from the isolated environment (found through CMAKE_PREFIX_PATH), copied to a fixed
# path so that include paths, compile commands and header dependencies stay the same.
find_package(pybind11 CONFIG REQUIRED)
get_filename_component(_pb11_root "${pybind11_DIR}/../../.." ABSOLUTE)
if(EXISTS "${_pb11_root}/include/pybind11/pybind11.h" AND EXISTS "${_pb11_root}/share/cmake/pybind11")
  file(GLOB_RECURSE _pb11_files RELATIVE "${_pb11_root}" "${_pb11_root}/include/*" "${_pb11_root}/share/cmake/*")
  foreach(f IN LISTS _pb11_files)
    get_filename_component(_dir "${TRTCAL_CORE_DIR}/pybind11/${f}" DIRECTORY)
    file(MAKE_DIRECTORY "${_dir}")
    file(COPY_FILE "${_pb11_root}/${f}" "${TRTCAL_CORE_DIR}/pybind11/${f}" ONLY_IF_DIFFERENT)
  endforeach()
  set(_pb11_dir "${TRTCAL_CORE_DIR}/pybind11/share/cmake/pybind11")
else()
  set(_pb11_dir "${pybind11_DIR}")  # a system pybind11: its path is stable already
endif()

# A list such as 80;90 travels as one argument.
string(REPLACE ";" "$<SEMICOLON>" _archs "${TRTCAL_CUDA_ARCHITECTURES}")
set(_core_args
  -DTRTCAL_CORE_BUILD=ON
  -DSKBUILD=ON
  -DSKBUILD_PROJECT_VERSION=${SKBUILD_PROJECT_VERSION}
  -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
  -Dpybind11_DIR=${_pb11_dir}
  -DPython_EXECUTABLE=${Python_EXECUTABLE}
  "-DTRTCAL_CUDA_ARCHITECTURES=${_archs}"
  -DTRTCAL_REQUIRE_CUDA=${TRTCAL_REQUIRE_CUDA}
  -DTensorRT_ROOT=${TensorRT_ROOT})
if(CMAKE_MAKE_PROGRAM)
  list(APPEND _core_args -DCMAKE_MAKE_PROGRAM=${CMAKE_MAKE_PROGRAM})
endif()

# Configure every time (a few seconds with a cache; it refreshes the paths of this run's cmake
# and ninja), then build: an up-to-date core is a no-op.
add_custom_target(trtcal_core ALL
  COMMAND ${CMAKE_COMMAND} -S ${CMAKE_SOURCE_DIR} -B ${TRTCAL_CORE_DIR} -G ${CMAKE_GENERATOR} ${_core_args}
  COMMAND ${CMAKE_COMMAND} --build ${TRTCAL_CORE_DIR}
  USES_TERMINAL
  VERBATIM)

install(CODE "
  execute_process(COMMAND \"${CMAKE_COMMAND}\" --install \"${TRTCAL_CORE_DIR}\" --prefix \"\${CMAKE_INSTALL_PREFIX}\"
                  RESULT_VARIABLE _rc)
  if(_rc)
    message(FATAL_ERROR \"trtcal: installing the core build failed\")
  endif()
")
