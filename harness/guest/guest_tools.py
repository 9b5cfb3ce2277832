"""Commands the guest's initramfs carries for a developer at its shell: `iopt`, one request to
the test module per call, its reply printed, a refusal as a non-zero exit with the errno's name.

It is a busybox `sh` script because the module routes a reply to the process that wrote the
request: the shell's builtin `echo` writes and its builtin `read` reads, so both are the same
process (a `cat ctl` after `echo ... > ctl` is another process and sees nothing).
"""
from __future__ import annotations

import errno

DEBUGFS_CTL = "/sys/kernel/debug/iopt_hil/ctl"

# arm64 uses the kernel's generic errno numbers, the same as the host's Linux.
_ERRNO_CASES = "\n".join(f"    {num}) echo {name};;" for num, name in sorted(errno.errorcode.items()))

IOPT = f"""#!/bin/sh
# iopt VERB [key=value ...]: one request to the iopt-hil test module, e.g.
#   iopt create ias=48 pgsizes=0x40201000
#   iopt map id=1 iova=0x1000 paddr=0x80000000 pgsize=0x1000 pgcount=1 prot=read|write
#   iopt info id=1
# Prints the module's reply; exits 1 with the errno's name when the reply's ret is an error,
# 2 when the module refused the request itself (a malformed line: the write fails).
ctl=${{IOPT_CTL:-{DEBUGFS_CTL}}}
errno_name() {{
  case "$1" in
{_ERRNO_CASES}
    *) echo "errno $1";;
  esac
}}
case "$1" in
  ""|-h|--help)
    echo "usage: iopt VERB [key=value ...]  (verbs: version create destroy list info map"
    echo "       map_unchecked unmap unmap_unchecked iova_to_phys; see the module's grammar)"
    [ -n "$1" ]; exit $?;;
esac
[ -e "$ctl" ] || {{ echo "iopt: $ctl is missing (is the iopt_hil module loaded?)" >&2; exit 2; }}
echo "$*" > "$ctl" || {{ echo "iopt: the module refused the request: $*" >&2; exit 2; }}
ret=0
while IFS= read -r line; do
  echo "$line"
  case " $line " in
    *" ret=-"*) r=${{line#* ret=-}}; ret=${{r%% *}};;
  esac
done < "$ctl"
[ "$ret" = 0 ] && exit 0
echo "iopt: $(errno_name "$ret")" >&2
exit 1
"""
