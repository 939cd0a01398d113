#!/usr/bin/env bash
# Build llama.cpp's own tools (llama-server, llama-batched-bench) from the very sources the
# installed llama-cpp-python was compiled from, so that benchmarks compare like with like.
#
#   bash benchmarks/build_llama_tools.sh [DEST]      # default DEST: ~/.cache/rebase-agent/llama-tools
#
# Prints the directory that holds the binaries. Needs cmake and a C++ compiler, and PyPI for the
# sdist of the installed version (pip's cache is used when it has it). Extra CMake flags go in
# CMAKE_ARGS as for `pip install llama-cpp-python`. On 2 cores the build takes about 10 minutes.
# On a CPU with AMX, start the tools with `--no-repack` (see README, "CPUs with AMX").
set -euo pipefail

dest="${1:-${HOME}/.cache/rebase-agent/llama-tools}"
version="$(python -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
out="${dest}/${version}"
if [[ -x "${out}/bin/llama-server" && -x "${out}/bin/llama-batched-bench" ]]; then
    echo "${out}/bin"
    exit 0
fi
mkdir -p "${out}"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT

sdist="${LLAMA_CPP_PYTHON_SDIST:-}"   # a downloaded llama_cpp_python-VERSION.tar.gz, if you have one
if [[ -z "${sdist}" ]]; then
    python -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==${version}" -d "${work}" >&2
    sdist="$(echo "${work}"/llama_cpp_python-*.tar.gz)"
fi
tar -xzf "${sdist}" -C "${work}"
src="$(echo "${work}"/llama_cpp_python-*/vendor/llama.cpp)"

# shellcheck disable=SC2086
cmake -S "${src}" -B "${work}/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON -DBUILD_SHARED_LIBS=OFF ${CMAKE_ARGS:-} >&2
cmake --build "${work}/build" --target llama-server llama-batched-bench -j "$(nproc)" >&2
mkdir -p "${out}/bin"
cp "${work}/build/bin/llama-server" "${work}/build/bin/llama-batched-bench" "${out}/bin/"
echo "${version}" >"${out}/VERSION"
echo "${out}/bin"
