#!/usr/bin/env python3
"""libvirt's own command lines run by the real QEMU, against the model.

For the x86_64 and aarch64 domains of libvirt's tests/qemuxmlconfdata
(NAME.ARCH-latest.args; qemu-system-aarch64 is taken from QEMU_X86's folder),
libvirt's command line is made runnable here by removing only what needs host
resources: disks, network and chardev back ends and the devices that use them, assigned
and passed-through host devices, secrets and TLS files, file-backed RAM (made plain RAM
of the same size and id), NUMA host binding, KVM (TCG instead). Domains that need more
(the host CPU model, firmware files, confidential computing) are skipped. Each
remaining line starts paused in QEMU 10.0.2; its flat memory map (what VFIO maps) is
compared with `iovactl check --json` of the same line, as vmtest/qemu-matrix.py does.

usage: libvirt-suite-qemu.py TESTS_DIR IOVACTL QEMU_X86 [--min N] -- HOST_ARGS...
Prints one line per compared domain and `libvirt-suite-qemu: N passed, M failed`; exits
1 on any failure or when fewer than N (default 100) domains could be compared.
"""

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("qemu_matrix", os.path.join(HERE, "qemu-matrix.py"))
qm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qm)

# Options whose argument names host resources and that cannot change the memory map.
DROP_WITH_ARG = {"blockdev", "drive", "netdev", "chardev", "mon", "fsdev", "add-fd",
                 "audiodev", "spice", "vnc", "incoming", "sandbox", "serial", "parallel",
                 "monitor", "qmp", "tpmdev", "iscsi", "fw_cfg", "smbios", "display",
                 "object-add", "loadvm", "run-with", "pidfile", "daemonize", "chroot",
                 "runas", "acpitable", "kernel", "initrd", "dtb", "append"}
# Device properties that point at something dropped above.
DEVICE_REFS = ("drive", "netdev", "chardev", "fsdev", "vhostfd", "fd", "audiodev",
               "tpmdev", "fds", "vhostfds", "romfile", "rng")
# Devices that need a host resource of their own.
DEVICE_DROP = re.compile(r"^(vfio-pci.*|usb-host|scsi-generic|scsi-block|vhost-.*|"
                         r"virtio-input-host.*|ivshmem-doorbell|ccid-card-passthru|usb-redir|"
                         r"spapr-vscsi|vhost-user-.*|virtio-9p.*|tpm-.*|pvpanic.*)$")
SKIP_ARGS = re.compile(r"(-cpu host\b|sev-|tdx-|pflash|-bios |memory-backend-epc|sgx|"
                       r"confidential|-accel hvf|-machine [a-z0-9]*isapc|hmat)")


def parse_args(text):
    words = shlex.split(text.replace("\\\n", " "))
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    return words


def jsonish(arg):
    if arg.startswith("{"):
        return json.loads(arg), True
    return None, False


def strip(words, binary):
    """The runnable line, or None with a reason to skip."""
    text = " ".join(words)
    m = SKIP_ARGS.search(text)
    if m:
        return None, f"needs {m.group(1).strip()}"
    out = [binary]
    i = 1
    while i < len(words):
        w = words[i]
        name = w.lstrip("-")
        arg = words[i + 1] if i + 1 < len(words) else None
        if name in DROP_WITH_ARG:
            i += 2
            continue
        if name in ("S", "no-user-config", "nodefaults", "no-shutdown", "no-hpet", "no-acpi",
                    "enable-kvm", "no-reboot", "nographic", "daemonize", "snapshot",
                    "no-kvm-pit-reinjection", "enable-fips"):
            if name in ("no-user-config", "nodefaults", "no-shutdown", "no-hpet", "no-acpi"):
                out.append(w)
            i += 1
            continue
        if name == "accel":
            out += ["-accel", "tcg"]
            i += 2
            continue
        if name == "machine":
            arg = re.sub(r"(^|,)accel=[a-z]+", r"\1accel=tcg", arg)
            arg = re.sub(r",?(kernel[-_]irqchip|dump-guest-core|mem-merge|pcspk-audiodev)=[a-z0-9]+",
                         "", arg)
            out += ["-machine", arg]
            i += 2
            continue
        if name == "device":
            d, is_json = jsonish(arg)
            if is_json:
                if DEVICE_DROP.match(d.get("driver", "")) or any(k in d for k in DEVICE_REFS):
                    i += 2
                    continue
            else:
                drv = arg.split(",")[0]
                if DEVICE_DROP.match(drv) or any(f"{k}=" in arg for k in DEVICE_REFS):
                    i += 2
                    continue
            out += ["-device", arg]
            i += 2
            continue
        if name == "object":
            o, is_json = jsonish(arg)
            if not is_json:
                return None, "a key=value -object"
            t = o.get("qom-type", "")
            if t in ("secret", "tls-creds-x509", "tls-creds-psk", "tls-creds-anon", "rng-random",
                     "rng-egd", "pr-manager-helper", "thread-context", "iothread", "input-linux",
                     "dbus-vmstate", "authz-simple", "throttle-group"):
                i += 2
                continue
            if t.startswith("memory-backend-"):
                o = {"qom-type": "memory-backend-ram", "id": o["id"], "size": o["size"],
                     "reserve": False}
            out += ["-object", json.dumps(o)]
            i += 2
            continue
        if arg is not None and not arg.startswith("-"):
            out += [w, arg]
            i += 2
        else:
            out.append(w)
            i += 1
    out += ["-S", "-display", "none", "-qmp", "stdio"]
    return out, None


def main():
    args = sys.argv[1:]
    minimum = 100
    if "--min" in args:
        k = args.index("--min")
        minimum = int(args[k + 1])
        del args[k:k + 2]
    if "--" not in args or args.index("--") != 3:
        sys.exit(__doc__)
    tests, iovactl, qemu = args[:3]
    host_args = args[4:]
    data = os.path.join(tests, "qemuxmlconfdata")
    env = dict(os.environ)
    passed = failed = skipped = 0
    arm = os.path.join(os.path.dirname(qemu), "qemu-system-aarch64")
    for name in sorted(os.listdir(data)):
        m = re.match(r"(.+)\.(x86_64|aarch64)-latest\.args$", name)
        if not m:
            continue
        binary = qemu if m.group(2) == "x86_64" else arm
        with open(os.path.join(data, name), encoding="utf-8", errors="replace") as f:
            words = parse_args(f.read())
        argv, why = strip(words, binary)
        tag = f"{m.group(1)}.{m.group(2)}"
        if argv is None:
            skipped += 1
            continue
        mine, refused, terr = qm.tool(iovactl, host_args, argv)
        if terr:
            if terr.startswith("iovactl exit 4:"):
                # Cannot be answered: libvirt-suite.py counts those on the whole suite.
                skipped += 1
                continue
            print(f"libvirt-suite-qemu: FAIL {tag}: {terr[:300]}")
            failed += 1
            continue
        flat, tree, err = qm.qmp_run(binary, argv[1:], env)
        if refused:
            # The tool says QEMU refuses this line: QEMU must refuse it too.
            if err is not None:
                print(f"libvirt-suite-qemu: PASS {tag} (both refuse)")
                passed += 1
            else:
                print(f"libvirt-suite-qemu: FAIL {tag}: QEMU started but the tool predicts: "
                      f"{refused[0][:200]}")
                failed += 1
            continue
        if err is not None:
            last = err.strip().splitlines()[-1] if err.strip() else "?"
            print(f"libvirt-suite-qemu: skip {tag}: QEMU refused the runnable line: {last[:160]}")
            skipped += 1
            continue
        theirs = qm.qemu_mapped(flat, tree)
        if theirs == mine:
            print(f"libvirt-suite-qemu: PASS {tag} ({len(theirs)} mapped runs)")
            passed += 1
        else:
            print(f"libvirt-suite-qemu: FAIL {tag}:\n  qemu: {qm.fmt(theirs)}\n  tool: {qm.fmt(mine)}"
                  f"\n  argv: {' '.join(shlex.quote(a) for a in argv)}")
            failed += 1
    print(f"libvirt-suite-qemu: {passed} passed, {failed} failed ({skipped} not runnable here "
          f"or not answered)")
    if passed < minimum:
        print(f"libvirt-suite-qemu: FAIL only {passed} domains compared (at least {minimum})")
    return 1 if failed or passed < minimum else 0


if __name__ == "__main__":
    sys.exit(main())
