#!/usr/bin/env bash
# Runs every test: typecheck, engine/model/training tests on Dawn (Node) and in headless Chromium, then the e2e specs.
# Installs what is missing first (npm packages; Debian's chromium and libvulkan1 when running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need_pkgs+=(libvulkan1)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "missing Debian packages: ${need_pkgs[*]} (install them with: sudo apt-get install ${need_pkgs[*]})" >&2
    exit 1
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# Dawn in Node: SwiftShader's Vulkan driver from the chromium package; Mesa's device-select layer crashes Dawn.
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/lib/chromium/vk_swiftshader_icd.json}"
export NODEVICE_SELECT=1

passed=0; failed=0
step() {
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $name"; fi
}

step typecheck npx tsc --noEmit -p .
step lint npx eslint src workers e2e
step "unit and kernel tests (Node + Dawn, headless Chromium)" npx vitest run
if [ -d e2e ] && ls e2e/*.spec.ts >/dev/null 2>&1; then
  step build npx vite build
  step "end-to-end (Playwright, headless Chromium)" npx playwright test
fi

echo "test suites: $passed passed, $failed failed"
[ "$failed" = 0 ]
