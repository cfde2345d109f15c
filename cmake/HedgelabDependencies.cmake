# Every dependency HedgeLab uses, found once. Debian 12 packages on a workstation; on the GPU machine the
# LibTorch bundled with PyTorch and header packages carried as unpacked .debs (scripts/gpu-build.sh).

find_package(Torch REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(spdlog REQUIRED)
find_package(Threads REQUIRED)

# Torch's flags (ABI, warnings) go to every target that links hedgelab_core through its interface.
separate_arguments(HEDGELAB_TORCH_CXX_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")

# CUDA: AUTO follows what LibTorch was built with.
set(HEDGELAB_CUDA_ENABLED OFF)
if(HEDGELAB_CUDA STREQUAL "ON" OR (HEDGELAB_CUDA STREQUAL "AUTO" AND TORCH_CUDA_LIBRARIES))
  set(HEDGELAB_CUDA_ENABLED ON)
endif()

# Qt: QtCore + QtTest for the test suites (also with the GUI off); Widgets and friends for the GUI.
set(HEDGELAB_QT_COMPONENTS Core)
if(HEDGELAB_TESTS)
  list(APPEND HEDGELAB_QT_COMPONENTS Test)
endif()
if(HEDGELAB_GUI)
  # QCustomPlot's Qt 6 build needs PrintSupport found before it.
  list(APPEND HEDGELAB_QT_COMPONENTS Gui Widgets PrintSupport Svg OpenGL OpenGLWidgets)
endif()
if(HEDGELAB_TESTS OR HEDGELAB_GUI)
  find_package(Qt6 REQUIRED COMPONENTS ${HEDGELAB_QT_COMPONENTS})
endif()
if(HEDGELAB_GUI)
  find_package(QCustomPlotQt6 REQUIRED)
  # Dear ImGui: Debian's static libimgui (with the OpenGL3 backend) and its pkg-config file.
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(IMGUI REQUIRED IMPORTED_TARGET imgui)
  set(HEDGELAB_IMGUI_TARGET PkgConfig::IMGUI)
endif()

# HDF5 (C API) for sessions, which the CLI writes too. FindHDF5 needs the C language enabled.
find_package(HDF5 REQUIRED COMPONENTS C)

# LibTorch 2.x's shared libraries export copies of some std:: symbols (seen with PyTorch 2.11's wheel: even
# libstdc++'s own std::filesystem references bound to libtorch_cpu's copies, and std::filesystem calls
# crashed). Naming libstdc++ right before LibTorch on every link line puts it first in the load order.
set(HEDGELAB_STDCXX_BEFORE_TORCH "")
if(Torch_VERSION VERSION_GREATER_EQUAL 2.0)
  set(HEDGELAB_STDCXX_BEFORE_TORCH "-Wl,--no-as-needed" stdc++)
endif()
