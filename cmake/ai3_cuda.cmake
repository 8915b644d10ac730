# The CUDA backend, libai3_cuda (src/cuda/): ai3's own kernels (*.cu) and
# the host side in C (*.c) over cuDNN and cuBLAS. Built when a CUDA compiler
# and the cuDNN and cuBLAS headers and libraries are found: in a CUDA
# toolkit, or in the nvidia-* wheels that torch's CUDA build installs (their
# site-packages folder `nvidia` is found through the Python interpreter, or
# given as AI3_NVIDIA_ROOT, in CMake or the environment). Otherwise the CPU
# library is built alone, with a message saying what was missing.

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(STATUS "ai3: no CUDA compiler found; building without the CUDA backend")
  return()
endif()

if(NOT AI3_NVIDIA_ROOT AND DEFINED ENV{AI3_NVIDIA_ROOT})
  set(AI3_NVIDIA_ROOT $ENV{AI3_NVIDIA_ROOT})
endif()
if(NOT AI3_NVIDIA_ROOT)
  find_package(Python COMPONENTS Interpreter QUIET)
  if(Python_EXECUTABLE)
    execute_process(
      COMMAND ${Python_EXECUTABLE} -c "import os, nvidia; print(os.path.dirname(nvidia.__file__) if nvidia.__file__ else list(nvidia.__path__)[0])"
      OUTPUT_VARIABLE AI3_NVIDIA_ROOT OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
endif()

find_package(CUDAToolkit QUIET)
if(NOT CUDAToolkit_FOUND)
  message(STATUS "ai3: CUDA compiler found but not the CUDA toolkit; building without the CUDA backend")
  return()
endif()

set(AI3_NVIDIA_HINTS "")
if(AI3_NVIDIA_ROOT)
  set(AI3_NVIDIA_HINTS ${AI3_NVIDIA_ROOT}/cudnn ${AI3_NVIDIA_ROOT}/cu13 ${AI3_NVIDIA_ROOT}/cublas)
endif()
find_path(AI3_CUDNN_INCLUDE cudnn.h HINTS ${AI3_NVIDIA_HINTS} ${CUDAToolkit_INCLUDE_DIRS}
          PATH_SUFFIXES include)
find_library(AI3_CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 HINTS ${AI3_NVIDIA_HINTS}
             ${CUDAToolkit_LIBRARY_DIR} PATH_SUFFIXES lib lib64)
find_path(AI3_CUBLAS_INCLUDE cublas_v2.h HINTS ${CUDAToolkit_INCLUDE_DIRS} ${AI3_NVIDIA_HINTS}
          PATH_SUFFIXES include)
find_library(AI3_CUBLAS_LIBRARY NAMES cublas libcublas.so.13 libcublas.so.12
             HINTS ${CUDAToolkit_LIBRARY_DIR} ${AI3_NVIDIA_HINTS} PATH_SUFFIXES lib lib64)
foreach(what AI3_CUDNN_INCLUDE AI3_CUDNN_LIBRARY AI3_CUBLAS_INCLUDE AI3_CUBLAS_LIBRARY)
  if(NOT ${what})
    message(STATUS "ai3: ${what} not found (set AI3_NVIDIA_ROOT to torch's site-packages/nvidia); building without the CUDA backend")
    return()
  endif()
endforeach()

enable_language(CUDA)
# sm_90 code, and PTX for older GPUs (compiled by their driver on first use).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "52")
  set(CMAKE_CUDA_ARCHITECTURES 90-real 75-virtual)
endif()
message(STATUS "ai3: CUDA backend with cuDNN ${AI3_CUDNN_LIBRARY}, cuBLAS ${AI3_CUBLAS_LIBRARY}")

file(GLOB AI3_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS src/cuda/*.cu)
file(GLOB AI3_CUDA_HOST_SOURCES CONFIGURE_DEPENDS src/cuda/*.c)

add_library(ai3_cuda_kernels OBJECT ${AI3_CUDA_KERNEL_SOURCES})
target_include_directories(ai3_cuda_kernels PRIVATE include src/cuda)
target_compile_options(ai3_cuda_kernels PRIVATE $<$<CONFIG:Release>:-O3>)
set_target_properties(ai3_cuda_kernels PROPERTIES CUDA_STANDARD 17 POSITION_INDEPENDENT_CODE ON
                      CUDA_VISIBILITY_PRESET hidden)

add_library(ai3_cuda SHARED ${AI3_CUDA_HOST_SOURCES} $<TARGET_OBJECTS:ai3_cuda_kernels>)
target_include_directories(ai3_cuda PRIVATE include src/runtime src/cuda ${AI3_CUDNN_INCLUDE}
                           ${AI3_CUBLAS_INCLUDE} ${CUDAToolkit_INCLUDE_DIRS})
target_compile_options(ai3_cuda PRIVATE ${AI3_WARNINGS} ${AI3_OPT})
# The CUDA libraries torch loads (same sonames), never a copy of our own:
# shared cudart; cuDNN and cuBLAS found beside torch's when installed in
# the same site-packages.
target_link_libraries(ai3_cuda PRIVATE CUDA::cudart ${AI3_CUDNN_LIBRARY} ${AI3_CUBLAS_LIBRARY}
                      ${CMAKE_DL_LIBS} Threads::Threads)
set_target_properties(ai3_cuda PROPERTIES CUDA_RUNTIME_LIBRARY Shared LINKER_LANGUAGE C
                      INSTALL_RPATH "$ORIGIN/../nvidia/cudnn/lib:$ORIGIN/../nvidia/cu13/lib:$ORIGIN/../nvidia/cublas/lib")

if(AI3_BUILD_TESTS)
  # ai3's own kernels against host loops, on a GPU if there is one.
  add_executable(ai3_cuda_tests tests/cuda/test_kernels.c $<TARGET_OBJECTS:ai3_cuda_kernels>)
  target_include_directories(ai3_cuda_tests PRIVATE include src/cuda ${CUDAToolkit_INCLUDE_DIRS})
  target_link_libraries(ai3_cuda_tests PRIVATE CUDA::cudart m)
  set_target_properties(ai3_cuda_tests PROPERTIES LINKER_LANGUAGE C)
endif()
