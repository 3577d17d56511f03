# Which GPU generations trtcal compiles its kernels for, and a message that says how long it
# takes. Used by the top-level CMakeLists.txt before enable_language(CUDA).

set(TRTCAL_ALL_CUDA_ARCHITECTURES "75;80;86;89;90")

# Sets <out> to the CUDA architectures to build and <why> to the reason, from
# TRTCAL_CUDA_ARCHITECTURES: a list (e.g. "90" or "80;90") is used as given; "all" is the full
# list; "native" is the GPU(s) of this machine; "auto" (default) is "native" when nvidia-smi lists
# a GPU and this is no CI or wheel build (CI, CIBUILDWHEEL or TRTCAL_WHEEL set), else "all".
function(trtcal_resolve_cuda_architectures out why)
  set(request "${TRTCAL_CUDA_ARCHITECTURES}")
  if(request STREQUAL "" OR request STREQUAL "auto")
    set(gpu "")
    if(DEFINED ENV{CI} OR DEFINED ENV{CIBUILDWHEEL} OR DEFINED ENV{TRTCAL_WHEEL})
      set(reason "a CI or wheel build: every supported generation")
    else()
      find_program(TRTCAL_NVIDIA_SMI nvidia-smi)
      if(TRTCAL_NVIDIA_SMI)
        execute_process(COMMAND ${TRTCAL_NVIDIA_SMI} --query-gpu=name --format=csv,noheader
                        OUTPUT_VARIABLE gpu ERROR_QUIET RESULT_VARIABLE rc TIMEOUT 20)
        string(STRIP "${gpu}" gpu)
        if(NOT rc EQUAL 0)
          set(gpu "")
        endif()
      endif()
      if(gpu)
        string(REPLACE "\n" ", " gpu "${gpu}")
        set(reason "this machine's GPU (${gpu}); TRTCAL_CUDA_ARCHITECTURES=all builds for every generation")
      else()
        set(reason "no GPU found: every supported generation; TRTCAL_CUDA_ARCHITECTURES=90 (say) builds one")
      endif()
    endif()
    if(gpu)
      set(request native)
    else()
      set(request all)
    endif()
  else()
    set(reason "TRTCAL_CUDA_ARCHITECTURES=${request}")
  endif()
  if(request STREQUAL "all")
    set(request "${TRTCAL_ALL_CUDA_ARCHITECTURES}")
  endif()
  set(${out} "${request}" PARENT_SCOPE)
  set(${why} "${reason}" PARENT_SCOPE)
endfunction()

# Prints what is compiled for which GPUs and roughly how long it takes the first time, also to
# the terminal when pip hides the build's output (best effort: nothing happens without one).
function(trtcal_announce_cuda_build archs why)
  if(EXISTS ${CMAKE_BINARY_DIR}/libtrtcal_kernels.a)
    message(STATUS "trtcal: CUDA kernels for ${archs} (${why}): rebuilding only what changed")
    return()
  endif()
  cmake_host_system_information(RESULT cores QUERY NUMBER_OF_LOGICAL_CORES)
  if(archs STREQUAL "native")
    set(n 1)
  else()
    list(LENGTH archs n)
  endif()
  # Measured: about 6 core-minutes per architecture (nvcc 13, 2026-12-03: five in 14-22 min on
  # 2 cores, one in 2 min on 2 cores and 45 s on 16); at least 1 minute.
  math(EXPR minutes "(6 * ${n} + ${cores} - 1) / ${cores}")
  if(minutes LESS 1)
    set(minutes 1)
  endif()
  set(text "trtcal: compiling the CUDA kernels for ${archs} (${why}): about ${minutes} min on ${cores} cores the first time; later builds reuse build/ and take seconds. `pip install -v` shows the progress.")
  message(STATUS "${text}")
  find_program(TRTCAL_SH sh)
  if(TRTCAL_SH AND NOT DEFINED ENV{CI})
    execute_process(COMMAND ${TRTCAL_SH} -c "{ printf '%s\\n' \"$1\" > /dev/tty; } 2>/dev/null" sh "${text}"
                    RESULT_VARIABLE ignored OUTPUT_QUIET ERROR_QUIET TIMEOUT 5)
  endif()
endfunction()
