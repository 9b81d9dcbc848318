#!/usr/bin/env bash
# Diagnose a crash when a fastcolor kernel formats an error message (seen on
# the H200 image with GCC 13): how is _C.so linked?
cd "$(dirname "$0")/.."
python3 -c "import sysconfig as s; print('LDSHARED', s.get_config_var('LDSHARED')); print('CXX', s.get_config_var('CXX'))"
echo "LDFLAGS=${LDFLAGS:-} CXX=${CXX:-} CC=${CC:-}"
FORCE_CUDA=1 MAX_JOBS=16 python3 setup.py build_ext --inplace >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
cat > /tmp/raise.py <<'PY'
import torch, fastcolor
try:
    torch.ops.fastcolor.nearest_bin(torch.zeros(1, 1, 2, 2), torch.zeros(3, 2))
except Exception as e:
    print("raised", type(e).__name__, str(e)[:90])
PY
LINK=$(grep -E " -shared " /tmp/b.log | tail -1)
echo "LINK: ${LINK:0:400}"
readelf -d fastcolor/_C.so | grep NEEDED
nm -C fastcolor/_C.so | grep -E " [TW] .*(_M_insert<long>|codecvt<char16_t)" | head -5
python3 -X faulthandler /tmp/raise.py 2>&1 | head -3; echo "rc=$?"
NEW=$(echo "$LINK" | sed -E 's/^[^ ]*(gcc|g\+\+|c\+\+)[^ ]* /g++ /')
echo "RELINK: ${NEW:0:200}"
eval "$NEW -lstdc++" && readelf -d fastcolor/_C.so | grep NEEDED
python3 -X faulthandler /tmp/raise.py 2>&1 | head -3; echo "rc=$?"
