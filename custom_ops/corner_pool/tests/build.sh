#!/bin/sh
# Build the standalone corner-pool CUDA harness without make:
#   custom_ops/corner_pool/tests/build.sh [ARCH]   (default sm_90)
# then run custom_ops/corner_pool/tests/harness [--quick|--no-bench|--bench-only].
set -e
cd "$(dirname "$0")"
ARCH="${1:-${ARCH:-sm_90}}"
"${NVCC:-nvcc}" -std=c++17 -O3 -lineinfo -arch="$ARCH" -o harness harness.cu
echo "built $(pwd)/harness for $ARCH"
