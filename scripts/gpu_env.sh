# gpu_env.sh — source on the GPU (device) machine, which lacks our Debian
# build dependencies: unpacks the .debs carried in .debs/ (fetched here with
# `apt-get download`, see docs/GPU.md) into a private prefix, never into /.
#   source scripts/gpu_env.sh && cmake -S . -B build/gpu ... 
_opc_prefix=/tmp/opcdeps
if [ ! -d "$_opc_prefix/usr" ]; then
  mkdir -p "$_opc_prefix"
  for f in .debs/*.deb; do dpkg -x "$f" "$_opc_prefix"; done
fi
if ! command -v pkg-config >/dev/null 2>&1; then
  export PATH="$_opc_prefix/usr/bin:$PATH"
  export LD_LIBRARY_PATH="$_opc_prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  [ -x "$_opc_prefix/usr/bin/pkg-config" ] || ln -sf pkgconf "$_opc_prefix/usr/bin/pkg-config"
fi
export PKG_CONFIG_SYSROOT_DIR="$_opc_prefix"
export PKG_CONFIG_PATH="$_opc_prefix/usr/lib/x86_64-linux-gnu/pkgconfig:$_opc_prefix/usr/share/pkgconfig"
export PKG_CONFIG_LIBDIR="$PKG_CONFIG_PATH"
export LDFLAGS="-Wl,-rpath,$_opc_prefix/usr/lib/x86_64-linux-gnu ${LDFLAGS:-}"
