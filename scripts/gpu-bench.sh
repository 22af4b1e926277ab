#!/usr/bin/env bash
# Runs the benchmarks (per-op vs ONNX Runtime Web, SD 1.5 step, optional PyTorch ops) on a Linux GPU machine with nothing installed.
#
# What the GPU machine needs: an NVIDIA driver with its Vulkan ICD (nvidia_icd.json and
# libGLX_nvidia.so.0; in a container, NVIDIA_DRIVER_CAPABILITIES must include "graphics"), x86-64
# glibc and libstdc++. No network, no Node, no npm, no Vulkan loader: the tarball carries
#   - the node binary of the machine that packed it (the project's engines field: Node >= 20),
#   - libvulkan.so.1 (the Vulkan loader Dawn dlopens; the NVIDIA driver ships only the ICD),
#   - the repository at the packed commit (git archive HEAD, or the working tree with --worktree),
#   - node_modules without the dev tooling: tsx and esbuild (to run the TypeScript), the `webgpu`
#     package's Dawn build for linux-x64 (dist/linux-x64/dawn.node) and onnxruntime-web's WebGPU build.
# PyTorch is not carried: if `python3 -c "import torch"` works there with CUDA, the op table is also
# timed in PyTorch (scripts/torch_step_bench.py).
#
#   scripts/gpu-bench.sh pack [--worktree] [OUT.tar.gz]   here: make the tarball (default /tmp/lorasmith-gpu-bench.tar.gz)
#   tar xzf lorasmith-gpu-bench.tar.gz && cd lorasmith-gpu-bench
#   scripts/gpu-bench.sh run [--quick] [--only S] [--reps N] there: print the adapter, then JSON lines from every bench
#
# `run --quick` uses small op shapes and the meta-only SD 1.5 forecast (for a software GPU); without
# it the SD 1.5 step bench writes a 2 GB random-weight checkpoint into the unpacked folder first.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME=lorasmith-gpu-bench

pack() {
  local worktree=0 out=/tmp/$NAME.tar.gz
  for a in "$@"; do
    case "$a" in
      --worktree) worktree=1 ;;
      *) out="$(realpath -m "$a")" ;;
    esac
  done
  STAGE="$(mktemp -d)"
  trap 'rm -rf "$STAGE"' EXIT
  local stage="$STAGE"
  local dst="$stage/$NAME"
  mkdir -p "$dst/.gpu-carry/lib"
  cd "$HERE"
  if [ "$worktree" = 1 ]; then
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$dst"
    echo "worktree of $(git rev-parse --short HEAD)" > "$dst/.gpu-carry/commit"
  else
    git archive HEAD | tar -xf - -C "$dst"
    git rev-parse HEAD > "$dst/.gpu-carry/commit"
  fi
  # Dev tooling (type checker, linters, browsers, bundler, test runner) and other platforms' binaries stay behind.
  tar -cf - \
    --exclude='node_modules/typescript' --exclude='node_modules/eslint*' --exclude='node_modules/@typescript-eslint' \
    --exclude='node_modules/@eslint*' --exclude='node_modules/playwright*' --exclude='node_modules/@playwright' \
    --exclude='node_modules/vite' --exclude='node_modules/vitest' --exclude='node_modules/@vitest' \
    --exclude='node_modules/@rolldown' --exclude='node_modules/rolldown' --exclude='node_modules/lightningcss*' \
    --exclude='node_modules/webgpu/dist/darwin-*' --exclude='node_modules/webgpu/dist/win32-*' \
    --exclude='node_modules/webgpu/dist/linux-arm64' --exclude='*.map' \
    --exclude='node_modules/onnxruntime-web/dist/*jsep*' --exclude='node_modules/onnxruntime-web/dist/*jspi*' \
    --exclude='node_modules/onnxruntime-web/dist/*webgl*' --exclude='node_modules/.vite' --exclude='node_modules/.cache' \
    node_modules | tar -xf - -C "$dst"
  cp "$(command -v node)" "$dst/.gpu-carry/node"
  local vk
  vk="$(ldconfig -p | awk '/libvulkan\.so\.1 .*x86-64/ && !f {print $NF; f = 1}')"
  [ -n "$vk" ] || { echo "gpu-bench pack: no libvulkan.so.1 here to carry (apt-get install libvulkan1)" >&2; exit 1; }
  cp -L "$vk" "$dst/.gpu-carry/lib/libvulkan.so.1"
  mkdir -p "$(dirname "$out")"
  tar -C "$stage" -czf "$out" "$NAME"
  echo "gpu-bench pack: $out ($(du -h "$out" | cut -f1)), $(cat "$dst/.gpu-carry/commit")" >&2
}

# The NVIDIA Vulkan ICD, found where the loader looks; if only the driver library is there (some
# containers), a manifest for it is written so that the loader still finds the NVIDIA driver.
nvidia_icd() {
  local d f
  for d in /etc/vulkan/icd.d /usr/share/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    for f in "$d"/nvidia_icd*.json; do [ -f "$f" ] && { echo "$f"; return; }; done
  done
  local lib
  lib="$(ldconfig -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 .*x86-64/ && !f {print $NF; f = 1}' || true)"
  if [ -n "$lib" ]; then
    f="$HERE/.gpu-carry/nvidia_icd.json"
    printf '{"file_format_version":"1.0.1","ICD":{"library_path":"%s","api_version":"1.3.0"}}\n' "$lib" > "$f"
    echo "$f"
  fi
}

run() {
  local quick=0 a
  for a in "$@"; do [ "$a" = --quick ] && quick=1; done
  cd "$HERE"
  local node=node
  [ -x .gpu-carry/node ] && node="$HERE/.gpu-carry/node"
  [ -d .gpu-carry/lib ] && export LD_LIBRARY_PATH="$HERE/.gpu-carry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export NODEVICE_SELECT=1
  local icd
  icd="$(nvidia_icd || true)"
  if [ -n "$icd" ]; then
    # The system's Vulkan, not the SwiftShader fallback src/engine/node.ts picks when VK_ICD_FILENAMES is unset.
    export LORASMITH_SYSTEM_VULKAN=1
    case "$icd" in "$HERE"/*) export VK_ICD_FILENAMES="$icd" ;; *) unset VK_ICD_FILENAMES ;; esac
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/{"nvidiaSmi":"/; s/$/"}/'
  else
    echo "gpu-bench: no NVIDIA Vulkan ICD found; running on whatever adapter Dawn finds (SwiftShader here)" >&2
  fi
  echo "{\"commit\":\"$(cat .gpu-carry/commit 2>/dev/null || git rev-parse HEAD)\",\"node\":\"$("$node" --version)\",\"vkIcd\":\"${VK_ICD_FILENAMES:-$icd}\"}"
  local tsx=(node_modules/tsx/dist/cli.mjs)
  # The op bench prints the adapter first; warn if it is not the NVIDIA one.
  local q=()
  [ "$quick" = 1 ] && q=(--quick)
  # Every argument (--quick, --only SUBSTR, --reps N) goes to the op bench.
  "$node" "${tsx[@]}" src/cli/bench-ops.ts "$@" | tee /tmp/$NAME-ops.jsonl
  if [ -n "$icd" ] && ! head -1 /tmp/$NAME-ops.jsonl | grep -qi nvidia; then
    echo "gpu-bench: WARNING: the adapter above is not NVIDIA's" >&2
  fi
  if [ "$quick" = 1 ]; then
    "$node" "${tsx[@]}" src/cli/bench.ts --sd15 --sd15-meta-only --sd15-steps=256
  else
    export LORASMITH_SD15="$HERE/.gpu-carry/sd15-random-f16.safetensors"
    [ -f "$LORASMITH_SD15" ] || "$node" "${tsx[@]}" src/cli/sd15-model.ts "$LORASMITH_SD15" >&2
    "$node" "${tsx[@]}" src/cli/bench.ts --sd15 --sd15-model="$LORASMITH_SD15"
  fi
  if command -v python3 >/dev/null && python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    python3 scripts/torch_step_bench.py "$@"
  else
    echo '{"torch":null,"why":"python3 with a CUDA build of torch is not there"}'
  fi
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
